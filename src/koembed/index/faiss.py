"""The index's vectors in FAISS: kinds and their parameters, construction, search settings, HNSW compaction.

Cosine similarity as inner product of L2-normalised embeddings. ``flat`` is exact (IndexFlatIP); ``hnsw``
(IndexHNSWFlat: M=32, efConstruction=200, efSearch=128) and ``ivf`` (IndexIVFFlat, nlist ~ 4 sqrt(n) trained on
the corpus) are approximate. Deleted passages are removed from flat and IVF; HNSW keeps them as tombstones that
search skips until they outnumber live vectors, when the graph is rebuilt without them (:func:`compact_hnsw`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from koembed.index.manifest import IndexParams

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

IVF_MIN_POINTS_PER_LIST = 39  # faiss's k-means warns below 39 training points per centroid


def faiss_index_params(params: IndexParams, n: int) -> dict[str, Any]:
    """The parameters recorded in the manifest for ``n`` passages.

    ``nlist`` defaults to 4 sqrt(n), lowered so each list gets >= 39 training passages (a tiny corpus gets
    fewer lists; ``note`` says so). ``nprobe`` defaults to min(nlist, max(8, nlist/16)).
    """
    if params.kind == "flat":
        return {}
    if params.kind == "hnsw":
        return {"M": params.hnsw_m, "ef_construction": params.ef_construction, "ef_search": params.ef_search}
    wanted = params.nlist if params.nlist is not None else max(1, round(4 * math.sqrt(n)))
    lists = max(1, min(wanted, n // IVF_MIN_POINTS_PER_LIST))
    out: dict[str, Any] = {"nlist": lists}
    if lists < wanted:
        out["note"] = (f"{n} passages are too few for {wanted} lists (faiss wants >= {IVF_MIN_POINTS_PER_LIST} "
                       f"training passages per list): using {lists}")
        log.warning(out["note"])
    out["nprobe"] = min(lists, params.nprobe if params.nprobe is not None else max(8, lists // 16))
    return out


def new_faiss_index(kind: str, dim: int, params: Mapping[str, Any], train: np.ndarray | None = None):
    """An empty FAISS index with inner-product metric whose ids are passage ids."""
    import faiss

    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        graph = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = params["ef_construction"]
        graph.hnsw.efSearch = params["ef_search"]
        return faiss.IndexIDMap2(graph)
    # IVF stores ids in its lists and removes by id itself; an IDMap around it would mis-track removals.
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, params["nlist"], faiss.METRIC_INNER_PRODUCT)
    ivf.train(train)
    ivf.nprobe = params["nprobe"]
    return ivf


def set_faiss_search_params(index: Any, kind: str, params: Mapping[str, Any]) -> None:
    """Restore the search settings of a loaded index (faiss does not store efSearch with the graph)."""
    import faiss

    if kind == "hnsw":
        graph: Any = faiss.downcast_index(index.index)  # typed as the base Index, which declares no hnsw
        graph.hnsw.efSearch = params["ef_search"]
    elif kind == "ivf":
        index.nprobe = params["nprobe"]


def compact_hnsw(index: Any, dim: int, params: Mapping[str, Any], tombstones: Iterable[int]):
    """A new HNSW graph from ``index``'s stored vectors without the ``tombstones`` pids."""
    import faiss
    import numpy as np

    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = index.index.reconstruct_n(0, index.ntotal)
    dead = np.fromiter(tombstones, dtype=np.int64)
    keep = ~np.isin(ids, dead)
    fresh = new_faiss_index("hnsw", dim, params)
    fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), ids[keep])
    return fresh


def normalized(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as contiguous float32 with unit rows (in place when already so), as the index stores them."""
    import faiss
    import numpy as np

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors
