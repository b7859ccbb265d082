"""Static embedding models: a vector per token, a text is the mean of its tokens' vectors (sentence-transformers'
``StaticEmbedding``, then ``Normalize``), so encoding is a table lookup: thousands of passages a second on a CPU.

A static model needs a tokenizer; :func:`learn_tokenizer` learns one with Hugging Face ``tokenizers`` from the
training texts (WordPiece or Unigram), normalised with NFKC and optionally lower-cased. NFKC keeps Hangul syllables
whole (NFKD would decompose them into jamo, tripling every Korean word). :func:`load_tokenizer` takes one from a
folder (a ``tokenizer.json``) or a teacher model. :func:`static_model` builds the model with seeded random vectors:
untrained, it is a random projection of the bag of word pieces (the baseline every trained number is compared with).
A model may respace its texts with Kiwi before tokenizing (``spacing``: :mod:`koembed.models.spacing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

TOKENIZER_MODELS = ("wordpiece", "unigram")
UNK = "[UNK]"
CONTINUATION = "##"
# The vector table in a static model's safetensors: sentence-transformers' own, or a model2vec folder's.
STATIC_TABLE_KEYS = ("embedding.weight", "embeddings")
SPACED_TYPE = "koembed.models.spacing.SpacedStaticEmbedding"  # modules.json type of a model that respaces its texts


def learn_tokenizer(texts: Iterable[str], model: str = "wordpiece", vocab_size: int = 30000,
                    lowercase: bool = True, min_frequency: int = 2) -> Tokenizer:
    """A tokenizer learned from ``texts``: NFKC (+ lower-case) normalisation, split at whitespace and punctuation,
    then WordPiece (``##`` continuations, as BERT) or Unigram (SentencePiece's model) up to ``vocab_size`` pieces.
    No special token but ``[UNK]``: a static model adds none.

    WordPiece is deterministic: the same texts give the same tokenizer, byte for byte. ``tokenizers`` alone is not
    (huggingface/tokenizers#1794: it numbers the ``##`` continuation pieces in hash-map order, and ids break ties
    between equally frequent merges), so every continuation piece is declared up front in sorted order, then the
    learned vocabulary is rebuilt as a plain WordPiece model. Unigram learns the same pieces run to run, but their
    scores vary in the last digits (floating-point sums in hash-map order).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if model not in TOKENIZER_MODELS:
        raise ValueError(f"unknown tokenizer model {model!r}: use {', '.join(TOKENIZER_MODELS)}")
    texts = list(texts)
    normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if model == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
        tokenizer.decoder = decoders.Metaspace()
        try:
            tokenizer.train_from_iterator(texts, trainer=trainers.UnigramTrainer(
                vocab_size=vocab_size, special_tokens=[UNK], unk_token=UNK, show_progress=False))
        except Exception as exc:  # tokenizers raises a bare Exception: too small a vocabulary for the alphabet
            raise ValueError(f"unigram tokenizer: {exc} (vocab_size {vocab_size}); raise vocab_size") from None
        return tokenizer
    continuations: set[str] = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            continuations.update(CONTINUATION + c for c in word[1:])
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                        special_tokens=[UNK, *sorted(continuations)])
    learner = Tokenizer(models.WordPiece(unk_token=UNK))
    learner.normalizer, learner.pre_tokenizer = normalizer, pre_tokenizer
    learner.train_from_iterator(texts, trainer=trainer)
    tokenizer = Tokenizer(models.WordPiece(learner.get_vocab(), unk_token=UNK, continuing_subword_prefix=CONTINUATION))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def load_tokenizer(source: str | Path) -> Tokenizer:
    """A fast tokenizer from a folder holding ``tokenizer.json`` (any model folder, a teacher's included) or a
    ``tokenizer.json`` file; a hub id is loaded with transformers' ``AutoTokenizer`` (local cache or hub)."""
    path = Path(str(source)).expanduser()
    if path.is_file():
        return read_tokenizer(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return read_tokenizer(path / "tokenizer.json")
        raise ModelLoadError(f"{path} holds no tokenizer.json (a fast tokenizer): pass a model or tokenizer folder")
    if str(source).startswith((".", "/", "~")):
        raise ModelLoadError(f"no tokenizer at {source}")
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(str(source))
    except OSError as exc:
        raise ModelLoadError(f"could not load the tokenizer of {source!r} ({exc}); download the model where the "
                             "hub is reachable and pass its folder") from None
    backend = getattr(loaded, "backend_tokenizer", None)
    if backend is None:
        raise ModelLoadError(f"{source!r} has no fast tokenizer, which a static model needs")
    return backend


def read_tokenizer(path: Path) -> Tokenizer:
    """``Tokenizer.from_file``, with a damaged file (not JSON, not a tokenizer, a link to some other file) as a
    :class:`ModelLoadError` naming it: tokenizers raises a bare ``Exception``."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers' parse errors are plain Exceptions
        link = f" (a link to {path.resolve()})" if path.is_symlink() else ""
        raise ModelLoadError(f"{path}{link} is not a Hugging Face tokenizers file ({exc}); restore the model's "
                             "tokenizer.json") from None


def _table_shape(weights: Path) -> tuple[int, ...]:
    """The shape of a static model's vector table, read from its safetensors header without loading it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            keys = set(handle.keys())
            key = next((k for k in STATIC_TABLE_KEYS if k in keys), None)
            if key is None:
                raise ModelLoadError(f"{weights} holds no vector table (a tensor named "
                                     f"{' or '.join(map(repr, STATIC_TABLE_KEYS))}; it holds {sorted(keys)[:5]}): "
                                     "not a static model's weights")
            return tuple(handle.get_slice(key).get_shape())
    except SafetensorError as exc:
        raise ModelLoadError(f"{weights} is not a complete safetensors file ({exc}); restore it") from None


def load_static_folder(folder: Path, device: str | None = "cpu") -> SentenceTransformer:
    """A static model folder loaded as sentence-transformers loads it, after checking what it would otherwise
    fail on with a traceback, or later at query time: ``tokenizer.json`` readable, ``model.safetensors`` complete
    with a 2-D vector table, and a row for every token id the tokenizer can produce (a table smaller than the
    vocabulary loads, then fails on the first query holding a token past its end). Each problem is a
    :class:`ModelLoadError` naming the file; non-finite weights are refused by
    :func:`koembed.models.checks.require_finite`, as for every model."""
    import json

    module_dir = folder / str(json.loads((folder / "modules.json").read_text(encoding="utf-8"))[0].get("path", ""))
    tokenizer_file = module_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelLoadError(f"{tokenizer_file} is missing: a static model needs its tokenizer")
    vocab = read_tokenizer(tokenizer_file).get_vocab_size()
    weights = module_dir / "model.safetensors"
    if weights.is_file():
        shape = _table_shape(weights)
        if len(shape) != 2:
            raise ModelLoadError(f"{weights}: the vector table has shape {list(shape)}, not (vocabulary, dimension)")
    try:
        model = _load_folder(folder, device)
    except ModelLoadError:
        raise
    except Exception as exc:  # anything else sentence-transformers trips on is a damaged folder, not a bug here
        raise ModelLoadError(f"{folder}: the static model does not load ({type(exc).__name__}: {exc})") from None
    module = static_module(model)
    if module is None:
        raise ModelLoadError(f"{folder}: its first module is not a static embedding")
    rows = module.num_embeddings
    if rows < vocab:
        raise ModelLoadError(f"{weights if weights.is_file() else folder}: {rows} vectors for a vocabulary of {vocab} "
                             f"token ids ({tokenizer_file}); the files belong to different models")
    return model


def _load_folder(folder: Path, device: str | None) -> SentenceTransformer:
    """``SentenceTransformer(folder)``; a folder whose first module is koembed's
    :class:`~koembed.models.spacing.SpacedStaticEmbedding` gets that class handed over (as sentence-transformers'
    trainer does for its own checkpoints), so that loading it needs no ``trust_remote_code``. Every other type in
    ``modules.json`` resolves as sentence-transformers resolves it."""
    import json

    from sentence_transformers import SentenceTransformer

    types = [str(m.get("type", "")) for m in json.loads((folder / "modules.json").read_text(encoding="utf-8"))]
    if types and types[0] == SPACED_TYPE:
        from koembed.models.spacing import SpacedStaticEmbedding

        return SentenceTransformer._load_with_module_classes(str(folder), {SPACED_TYPE: SpacedStaticEmbedding},
                                                             device=device)
    return SentenceTransformer(str(folder), device=device)


def static_model(tokenizer: Tokenizer, dim: int = 512, seed: int = 42, weights: Any = None,
                 device: str | None = "cpu", spacing: str = "none") -> SentenceTransformer:
    """``StaticEmbedding`` (mean of token vectors) + ``Normalize`` over ``tokenizer``'s vocabulary; with
    ``spacing`` other than ``none``, a :class:`~koembed.models.spacing.SpacedStaticEmbedding` that respaces its
    texts with Kiwi first.

    Without ``weights`` the vectors are drawn from N(0, 1) with ``seed`` (torch's default ``EmbeddingBag``
    initialisation): the untrained baseline. Runs on the CPU by default, where a table lookup is fastest.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    if weights is None:
        generator = torch.Generator().manual_seed(seed)
        weights = torch.randn(tokenizer.get_vocab_size(), dim, generator=generator)
    if spacing == "none":
        embedding = StaticEmbedding(tokenizer, embedding_weights=weights)
    else:
        from koembed.models.spacing import SpacedStaticEmbedding

        embedding = SpacedStaticEmbedding(tokenizer, embedding_weights=weights, spacing=spacing)
    return SentenceTransformer(modules=[embedding, Normalize()], device=device)


def static_texts(model: Any, texts: Sequence[str]) -> list[str]:
    """``texts`` as a static model's tokenizer reads them: respaced where the model respaces (token counts must be
    of these), unchanged otherwise."""
    module = static_module(model)
    respace = getattr(module, "respace", None)
    return list(texts) if respace is None else respace(texts)


def static_module(model: Any) -> Any | None:
    """The ``StaticEmbedding`` a model starts with (a :class:`~koembed.models.static_numpy.NumpyStaticModel` is its
    own), or None for any other model (a transformer, an ONNX copy)."""
    import sys

    from koembed.models.static_numpy import NumpyStaticModel

    if isinstance(model, NumpyStaticModel):
        return model
    if "sentence_transformers" not in sys.modules:  # never imported: no model here is one of its
        return None
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return None
    return first if isinstance(first, StaticEmbedding) else None


def is_static_folder(path: str | Path) -> bool:
    """Whether a model folder holds a static model (``modules.json`` naming a StaticEmbedding first), without
    loading it; also true of model2vec folders, which sentence-transformers loads the same way."""
    import json

    modules = Path(path).expanduser() / "modules.json"
    if not modules.is_file():
        return False
    try:
        first = json.loads(modules.read_text(encoding="utf-8"))[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return False
    return str(first.get("type", "")).endswith("StaticEmbedding")


def describe_static(model: Any) -> dict[str, Any] | None:
    """What a static model is, for cards and logs: vocabulary size, dimension, tokenizer kind; None otherwise."""
    module = static_module(model)
    if module is None:
        return None
    tokenizer = module.tokenizer
    return {"type": "static", "vocab_size": int(module.num_embeddings), "dim": int(module.embedding_dim),
            "tokenizer": type(tokenizer.model).__name__,
            "normalizer": type(tokenizer.normalizer).__name__ if tokenizer.normalizer is not None else None,
            "spacing": getattr(module, "spacing", "none")}


def untrained_like(model: Any, seed: int = 42) -> SentenceTransformer:
    """The untrained baseline of a static model: the same tokenizer and dimension, seeded random vectors. Its
    scores are what bag-of-word-piece overlap alone gives; a trained model's gain over it is what training added.
    It respaces its texts as the model does (the same ``spacing``)."""
    module = static_module(model)
    if module is None:
        raise ModelLoadError("the untrained baseline is defined for static models only")
    from tokenizers import Tokenizer

    return static_model(Tokenizer.from_str(module.tokenizer.to_str()), module.embedding_dim, seed=seed,
                        spacing=getattr(module, "spacing", "none"))


def save_model(model: Any, folder: str | Path, dtype: str = "float32") -> None:
    """``model.save(folder)``; a static model's vectors in ``dtype`` (``float16`` halves the file: the bundled
    model ships so). :func:`koembed.models.load_model` loads them back as float32 unless asked otherwise."""
    import torch

    module = static_module(model)
    if dtype == "float32" or module is None:
        model.save(str(folder))
        return
    weight = module.embedding.weight
    original = weight.data
    weight.data = original.to(getattr(torch, dtype))
    try:
        model.save(str(folder))
    finally:
        weight.data = original
