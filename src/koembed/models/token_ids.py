"""Embed token-id inputs: ids of the model's own tokenizer, read as they are (no special token added or removed).

What TEI and infinity accept as ``input`` besides text, and what OpenAI's API accepts (for its own tokenizer):
a client that tokenized already (to count or cut text itself) sends the ids and gets the embedding of exactly
those tokens. The ids of ``model.tokenizer(text)["input_ids"]`` (special tokens included; for a static model
``tokenizer.encode(text, add_special_tokens=False).ids``, which is what it reads of a text) give the embedding
of ``text``. sentence-transformers' ``encode`` only takes text, so the features its modules take are built here
from the ids (padding and attention mask by the tokenizer's own ``pad``) and the model's forward pass is run on
them, as ``encode`` runs it. Supported: transformer models (any precision), static models (StaticEmbedding) and
the ONNX backends; any other encoder raises :class:`~koembed.errors.SpecError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from koembed.errors import SpecError
from koembed.models.embed import encode, release_freed_memory, serialized, token_budget_batches
from koembed.models.onnx import GraphEncoder
from koembed.models.spec import EncodeOptions, Encoder
from koembed.models.static import static_module

if TYPE_CHECKING:
    import numpy as np

TokenIds = Sequence[int]
Input = str | TokenIds


def vocabulary_size(model: Encoder) -> int:
    """How many token ids the model can read: ids ``0 .. n-1`` (the smaller of its tokenizer's vocabulary, added
    tokens included, and its embedding table where it has one)."""
    static = static_module(model)
    if static is not None:
        return min(static.tokenizer.get_vocab_size(), static.embedding.num_embeddings)
    if isinstance(model, GraphEncoder):
        return len(model.tokenizer)
    if _torch_transformer(model):
        transformer: Any = model  # a sentence-transformers model: indexable by module
        return min(len(transformer.tokenizer), transformer[0].auto_model.get_input_embeddings().num_embeddings)
    raise SpecError(f"{type(model).__name__} does not take token ids: send text")


def _torch_transformer(model: Any) -> bool:
    try:
        return hasattr(model[0], "auto_model")
    except (TypeError, IndexError, KeyError):
        return False


@serialized()
def encode_token_ids(model: Encoder, ids: Sequence[TokenIds], options: EncodeOptions | None = None) -> np.ndarray:
    """Embed token-id sequences as a float32 array (n, dim), in input order; batched as :func:`encode` batches
    text (longest first, ``batch_size`` per forward pass or ``max_batch_tokens`` per batch). The caller checks the
    ids (:func:`vocabulary_size`) and their length (the model's ``max_seq_length``): nothing is truncated here.
    ``options.prompt`` does not apply (the ids are the whole input)."""
    import numpy as np

    opts = options or EncodeOptions()
    vocabulary_size(model)  # refuses models that cannot take ids
    rows = [list(map(int, seq)) for seq in ids]
    lengths = [len(seq) for seq in rows]
    if opts.max_batch_tokens is not None:
        batches = token_budget_batches(lengths, opts.max_batch_tokens)
    else:
        order = sorted(range(len(rows)), key=lambda i: -lengths[i])
        size = len(rows) if static_module(model) is not None else opts.batch_size
        batches = [order[s: s + size] for s in range(0, len(order), max(size, 1))]
    out: np.ndarray = np.empty((len(rows), model.get_embedding_dimension()), dtype=np.float32)
    for batch in batches:
        out[batch] = _forward(model, [rows[i] for i in batch])
    release_freed_memory()
    return out


def _forward(model: Encoder, rows: list[list[int]]) -> np.ndarray:
    """One forward pass over ``rows`` (already checked), as sentence-transformers' ``encode`` runs one batch."""
    import numpy as np

    if isinstance(model, GraphEncoder):
        return model.forward(model.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="np"))
    import torch
    from sentence_transformers.util import batch_to_device

    if static_module(model) is not None:  # StaticEmbedding reads flat ids with per-text offsets (EmbeddingBag)
        offsets = np.cumsum([0] + [len(r) for r in rows[:-1]])
        features = {"input_ids": torch.tensor([i for r in rows for i in r], dtype=torch.long),
                    "offsets": torch.from_numpy(offsets)}
    else:
        features = dict(model.tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt"))
    torch_model: Any = model  # a sentence-transformers model (the Encoder protocol has no forward pass)
    torch_model.eval()
    with torch.inference_mode():
        out = torch_model(batch_to_device(features, torch_model.device))["sentence_embedding"]
    return out.float().cpu().numpy()


def encode_inputs(model: Encoder, inputs: Sequence[Input], options: EncodeOptions | None = None, *,
                  max_seq_length: int | None = None) -> np.ndarray:
    """Embed a mix of texts (:func:`encode`, truncated at ``max_seq_length``) and token-id sequences
    (:func:`encode_token_ids`, taken as they are) as one float32 array, in input order: what the server's
    batches hold when requests of both kinds share a batch."""
    import numpy as np

    text_at = [i for i, item in enumerate(inputs) if isinstance(item, str)]
    ids_at = [i for i, item in enumerate(inputs) if not isinstance(item, str)]
    if not ids_at:
        return encode(model, list(inputs), options, max_seq_length=max_seq_length)
    out: np.ndarray = np.empty((len(inputs), model.get_embedding_dimension()), dtype=np.float32)
    if text_at:
        out[text_at] = encode(model, [inputs[i] for i in text_at], options, max_seq_length=max_seq_length)
    out[ids_at] = encode_token_ids(model, [inputs[i] for i in ids_at], options)
    return out
