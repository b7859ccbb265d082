"""BGE-M3's three outputs: dense vectors, lexical (sparse) weights and ColBERT multi-vectors, from one forward pass.

A bge-m3 model folder holds, beside the XLM-RoBERTa encoder, two small heads that sentence-transformers does not
load: ``sparse_linear.pt`` (hidden -> 1) and ``colbert_linear.pt`` (hidden -> hidden). koembed computes their
outputs exactly as FlagEmbedding 1.4's ``BGEM3FlagModel`` does (``FlagEmbedding/finetune/embedder/encoder_only/
m3/modeling.py`` and ``inference/embedder/encoder_only/m3.py``; parity tested to 1e-5 against a fixture that
FlagEmbedding wrote, ``tests/fixtures/m3_parity.json``):

- dense: the sentence-transformers pipeline's embedding (CLS pooling + L2 normalisation for bge-m3);
- lexical weights: ``relu(sparse_linear(h))`` per token, the maximum per token id, ids of the CLS, EOS, PAD and
  UNK tokens dropped, and only weights > 0 kept;
- ColBERT vectors: ``colbert_linear(h)`` of every token but the first (CLS), L2-normalised, padding dropped.

Scores (FlagEmbedding's): dense = dot product; sparse = sum over shared token ids of the product of weights;
ColBERT = the mean over query vectors of the best dot product with a passage vector; ``m3`` = their weighted sum
divided by the sum of weights, (0.4, 0.2, 0.4) by default, as FlagEmbedding's README recommends.
Why written here: FlagEmbedding 1.4.2 cannot be imported with transformers 5 (docs/STACK.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.models.embed import serialized
from koembed.models.loading import load_model
from koembed.models.locate import COLBERT_HEAD, SPARSE_HEAD, resolve_model
from koembed.models.prompts import Role, role_options
from koembed.models.spec import EncodeOptions, ModelSpec
from koembed.progress import progress

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

M3_WEIGHTS = (0.4, 0.2, 0.4)  # dense, sparse, colbert: FlagEmbedding's recommended weights_for_different_modes


@dataclass
class M3Output:
    """What :meth:`M3Encoder.encode` returns, one entry per text in input order."""

    dense: np.ndarray  # (n, dim) float32
    sparse: list[dict[int, float]] = field(default_factory=list)  # token id -> weight
    colbert: list[np.ndarray] = field(default_factory=list)  # (tokens - 1, dim) float32 per text


def _head_file(name: str, file: str) -> Path | None:
    """``file`` in the model folder (or the local Hugging Face cache for a hub id), or None."""
    path = Path(resolve_model(name)).expanduser()
    if path.is_dir():
        return path / file if (path / file).is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, file)
    return Path(found) if isinstance(found, str) else None


def has_m3_heads(name: str) -> bool:
    """Whether the model ``name`` (folder or cached hub id) holds bge-m3's sparse and ColBERT heads."""
    return _head_file(name, SPARSE_HEAD) is not None and _head_file(name, COLBERT_HEAD) is not None


class M3Encoder:
    """A loaded bge-m3-layout model with its two heads (see the module docstring); torch backend only.

    ``model`` is the sentence-transformers model (its dense embedding, tokenizer and prompts are used as they
    are); ``encode`` returns the outputs asked for.
    """

    def __init__(self, model: SentenceTransformer, sparse_head: Path, colbert_head: Path):
        import torch

        self.model = model
        first = next(model.parameters())
        heads = []
        for path in (sparse_head, colbert_head):
            state = torch.load(path, map_location="cpu", weights_only=True)
            weight = state.get("weight")
            if weight is None or weight.ndim != 2:
                raise ModelLoadError(f"{path}: not a linear layer's state dict (no 2-d 'weight')")
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in state)
            linear.load_state_dict(state)
            heads.append(linear.to(device=first.device, dtype=first.dtype).eval())
        self.sparse_linear, self.colbert_linear = heads
        tokenizer = model.tokenizer
        self.unused_ids = {tokenizer.convert_tokens_to_ids(tokenizer.special_tokens_map[name])
                           for name in ("cls_token", "eos_token", "pad_token", "unk_token")
                           if name in tokenizer.special_tokens_map}

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @serialized(lambda m3: m3.model)
    def encode(self, texts: Sequence[str], options: EncodeOptions = EncodeOptions(), role: Role | None = "passage",
               *, dense: bool = True, sparse: bool = True, colbert: bool = True) -> M3Output:
        """The three outputs of ``texts`` (queries or passages: ``role`` picks the model's prompt; None keeps
        ``options.prompt``, e.g. an index's recorded one), batched longest first, ``options.batch_size`` texts per
        forward pass."""
        import numpy as np
        import torch

        opts = role_options(options, self.model, role) if role is not None else options
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        dim = self.model.get_embedding_dimension() or 0
        out = M3Output(np.empty((len(texts), dim), dtype=np.float32), [{}] * len(texts) if sparse else [],
                       [np.empty((0, 0), np.float32)] * len(texts) if colbert else [])
        self.model.eval()
        with torch.inference_mode(), progress(total=len(texts), desc="Encoding (M3)", unit="text",
                                          disable=not opts.show_progress) as bar:
            for start in range(0, len(order), opts.batch_size):
                idx = order[start: start + opts.batch_size]
                features = self.model.preprocess([texts[i] for i in idx], prompt=opts.prompt)
                features = {k: v.to(self.model.device) if isinstance(v, torch.Tensor) else v
                            for k, v in features.items()}
                result = self.model(features)
                hidden, mask = result["token_embeddings"], result["attention_mask"]
                if dense:
                    out.dense[idx] = result["sentence_embedding"].float().cpu().numpy()
                if sparse:
                    weights = torch.relu(self.sparse_linear(hidden)).squeeze(-1).float().cpu().numpy()
                    ids = features["input_ids"].cpu().numpy()
                    lengths = mask.sum(1).cpu().numpy()
                    for row, i in enumerate(idx):
                        out.sparse[i] = self._lexical_weights(ids[row, :lengths[row]], weights[row, :lengths[row]])
                if colbert:
                    vecs = self.colbert_linear(hidden[:, 1:]) * mask[:, 1:, None].to(hidden.dtype)
                    vecs = torch.nn.functional.normalize(vecs, dim=-1).float().cpu().numpy()
                    lengths = mask.sum(1).cpu().numpy()
                    for row, i in enumerate(idx):
                        out.colbert[i] = np.ascontiguousarray(vecs[row, : lengths[row] - 1])
                bar.update(len(idx))
        if not dense:
            out.dense = out.dense[:, :0]
        return out

    def _lexical_weights(self, ids: np.ndarray, weights: np.ndarray) -> dict[int, float]:
        """The largest weight per token id, special tokens and zero weights dropped (FlagEmbedding's rule)."""
        result: dict[int, float] = {}
        for token, weight in zip(ids.tolist(), weights.tolist()):
            if token not in self.unused_ids and weight > 0 and weight > result.get(token, 0.0):
                result[token] = weight
        return result


def _heads(name: str) -> tuple[Path, Path]:
    sparse_head, colbert_head = _head_file(name, SPARSE_HEAD), _head_file(name, COLBERT_HEAD)
    if sparse_head is None or colbert_head is None:
        raise ModelLoadError(f"{name} has no {SPARSE_HEAD} and {COLBERT_HEAD} beside its weights: the m3 "
                             "retrievers need a bge-m3-layout model (BAAI/bge-m3 or a unified fine-tune of it)")
    return sparse_head, colbert_head


def m3_encoder(name: str, model: SentenceTransformer) -> M3Encoder:
    """An :class:`M3Encoder` over a model already loaded from ``name`` (whose folder holds the two heads)."""
    return M3Encoder(model, *_heads(name))


def load_m3(model: ModelSpec | str, **settings: Any) -> M3Encoder:
    """The model with its bge-m3 heads; :class:`ModelLoadError` if the folder lacks them or the backend is ONNX."""
    spec = ModelSpec.of(model, **settings)
    if spec.backend == "auto":
        spec = ModelSpec.of(spec, backend="torch")  # the heads run on torch only
    if spec.backend != "torch":
        raise ModelLoadError(f"the M3 outputs need the torch backend, not {spec.backend} (the ONNX export holds "
                             "only the dense pipeline)")
    heads = _heads(spec.name)  # before the (long) model load
    return M3Encoder(load_model(spec), *heads)


def lexical_score(query: dict[int, float], passage: dict[int, float]) -> float:
    """FlagEmbedding's ``compute_lexical_matching_score``: sum of weight products over shared token ids."""
    if len(passage) < len(query):
        query, passage = passage, query
    return float(sum(weight * passage[token] for token, weight in query.items() if token in passage))


def colbert_score(query: np.ndarray, passage: np.ndarray) -> float:
    """FlagEmbedding's ``colbert_score``: mean over query vectors of the best dot product with a passage vector."""
    if not len(query) or not len(passage):
        return 0.0
    return float((query @ passage.T).max(axis=1).sum() / len(query))


def m3_weights(weights: Sequence[float] | None) -> tuple[float, float, float]:
    """Checked (dense, sparse, colbert) weights: three non-negative numbers, not all zero."""
    values = tuple(float(w) for w in (weights if weights is not None else M3_WEIGHTS))
    if len(values) != 3 or any(w < 0 for w in values) or sum(values) <= 0:
        raise ValueError(f"M3 weights are three non-negative numbers (dense, sparse, colbert), not all 0: {values}")
    return values


def combined_score(dense: Any, sparse: Any, colbert: Any, weights: Sequence[float] | None = None) -> Any:
    """FlagEmbedding's ``colbert+sparse+dense`` score: the weighted sum divided by the sum of the weights (of
    floats, or element-wise of numpy arrays)."""
    w = m3_weights(weights)
    return (w[0] * dense + w[1] * sparse + w[2] * colbert) / sum(w)

