"""BGE-M3's lexical weights and ColBERT vectors in a Qdrant collection: layout, points and the three M3 queries.

When an index is built with a bge-m3-layout model (``sparse_linear.pt`` and ``colbert_linear.pt`` beside its
weights, torch backend), its collection has two more named vectors besides ``dense`` and ``bm25``:

- ``m3_sparse``: a sparse vector, token id -> lexical weight (:class:`koembed.models.m3.M3Encoder`), with no
  modifier, so Qdrant's sparse score (a dot product over shared ids) is FlagEmbedding's lexical matching score;
- ``m3_colbert``: a multivector of the passage's normalised ColBERT vectors (every token but CLS), distance
  ``dot`` and comparator ``max_sim``. Qdrant's MaxSim *sums* over the query vectors the best dot product with a
  passage vector; FlagEmbedding's ``colbert_score`` is the *mean*, so koembed divides Qdrant's score by the
  query's vector count (the ranking is the same).

Searches (``mode``): ``sparse`` and ``colbert`` are one Qdrant query each. ``m3`` is FlagEmbedding's weighted
sum of the three scores (:func:`koembed.models.m3.combined_score`, dense 0.4, sparse 0.2, colbert 0.4 by
default): the candidates are the union of the top max(k, 100) of each of the three searches, then Qdrant
scores every candidate exactly on each vector (``has_id`` filter, exact search) and koembed sums. It is exact
over every passage when the collection holds at most 100 (more: a passage outside all three top lists is not
ranked, as in any prefetch-and-rescore pipeline).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import IndexStoreError, SpecError
from koembed.models.m3 import M3Encoder, has_m3_heads, m3_encoder

if TYPE_CHECKING:
    import numpy as np

M3_SPARSE, M3_COLBERT = "m3_sparse", "m3_colbert"
M3_SEARCH_MODES = ("sparse", "colbert", "m3")


def passage_m3(name: str, encoder: Any) -> M3Encoder | None:
    """The M3 encoder of a build's model when its folder holds bge-m3's heads (torch backend), else None."""
    if not has_m3_heads(name) or getattr(encoder, "backend", "torch") != "torch":
        return None
    return m3_encoder(name, encoder)


def m3_record(m3: M3Encoder) -> dict[str, Any]:
    """The manifest's record that the collection holds the M3 vectors (names, ColBERT dimension, scores)."""
    return {"sparse": M3_SPARSE, "colbert": M3_COLBERT, "colbert_dimension": int(m3.colbert_linear.out_features),
            "vocab_size": len(m3.tokenizer), "colbert_score": "qdrant max_sim (dot) / query vectors"}


def m3_vector_params(record: dict[str, Any], on_disk: bool | None) -> dict[str, Any]:
    """The ``m3_colbert`` multivector's parameters for ``create_collection``."""
    from qdrant_client import models

    return {M3_COLBERT: models.VectorParams(
        size=record["colbert_dimension"], distance=models.Distance.DOT, on_disk=on_disk,
        multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM))}


def m3_sparse_params() -> dict[str, Any]:
    """The ``m3_sparse`` vector's parameters: no idf modifier, the weights are the score."""
    from qdrant_client import models

    return {M3_SPARSE: models.SparseVectorParams()}


def check_m3_collection(params: Any, record: dict[str, Any], where: str, index_dir: Path) -> None:
    """The collection (its ``config.params``) holds the M3 vectors the manifest records."""
    from qdrant_client import models

    colbert = params.vectors.get(M3_COLBERT) if isinstance(params.vectors, dict) else None
    sparse = (params.sparse_vectors or {}).get(M3_SPARSE)
    multi = getattr(colbert, "multivector_config", None)
    if (colbert is None or colbert.size != record["colbert_dimension"] or colbert.distance != models.Distance.DOT
            or multi is None or multi.comparator != models.MultiVectorComparator.MAX_SIM):
        raise IndexStoreError(f"{index_dir}: {where} has no {record['colbert_dimension']}-dimensional max_sim "
                              f"multivector {M3_COLBERT!r}, which its manifest records: rebuild the index")
    if sparse is None or sparse.modifier not in (None, models.Modifier.NONE):
        raise IndexStoreError(f"{index_dir}: {where} has no sparse vector {M3_SPARSE!r} without modifier, which its "
                              "manifest records: rebuild the index")


def sparse_vector(weights: dict[int, float]) -> Any:
    """``{token id: weight}`` as a Qdrant sparse vector (ids ascending); None when empty."""
    from qdrant_client import models

    if not weights:
        return None
    ids = sorted(weights)
    return models.SparseVector(indices=ids, values=[float(weights[i]) for i in ids])


def point_vectors(weights: dict[int, float], colbert: np.ndarray) -> dict[str, Any]:
    """A passage's M3 named vectors (a passage without lexical weight gets no ``m3_sparse``)."""
    vectors: dict[str, Any] = {M3_COLBERT: colbert.tolist()}
    sparse = sparse_vector(weights)
    if sparse is not None:
        vectors[M3_SPARSE] = sparse
    return vectors


def require_m3(record: dict[str, Any] | None, mode: str, index_dir: Path) -> None:
    if not record:
        raise SpecError(f"{index_dir} holds no BGE-M3 vectors: {mode} search needs an index built with a "
                        "bge-m3-layout model (sparse_linear.pt and colbert_linear.pt beside its weights)")


def m3_requests(mode: str, weights: dict[int, float] | None, colbert: np.ndarray | None, limit: int,
                common: dict[str, Any]) -> list[Any]:
    """One query's requests on the M3 vectors: ``sparse`` (none for a query without lexical weight) unless
    ``mode`` is ``colbert``, then ``colbert`` unless ``mode`` is ``sparse``."""
    from qdrant_client import models

    out = []
    sparse = sparse_vector(weights or {}) if mode != "colbert" else None
    if sparse is not None:
        out.append(models.QueryRequest(query=sparse, using=M3_SPARSE, limit=limit, **common))
    if mode != "sparse":
        if colbert is None:
            raise ValueError(f"{mode} search needs the query's ColBERT vectors")
        out.append(models.QueryRequest(query=colbert.tolist(), using=M3_COLBERT, limit=limit, **common))
    return out
