"""A loaded index: dense (FAISS), bm25 and hybrid search over its passages.

Hits are ``(doc_id, score)``, best first, ties by ascending doc id, as every koembed retriever returns them;
``hybrid`` is :class:`koembed.retrieval.hybrid.HybridRetriever`'s fusion of the two parts (the one the index was built
with: reciprocal-rank fusion by default). BM25 is koembed's :class:`koembed.lexical.BM25Retriever` over the fields' stored,
memory-mapped segments (:mod:`koembed.index.bm25_store`): loading reads no postings, and IDF and average length
come from the live passages at query time. Loading reads no passage either: hits' ids and texts are read per row
(:mod:`koembed.index.rows`), and the vectors at the first dense search. An index built before 0.4 (no segments) is fitted in memory from the
stored tokens on its first bm25 search instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

from koembed.errors import SpecError
from koembed.index.analysis import recorded_user_dict
from koembed.index.bm25_store import stored_fields
from koembed.index.encoder import checked_encoder, embed, with_prompt
from koembed.index.manifest import read_manifest
from koembed.index.rows import StoredRows
from koembed.index.versions import IndexState, StoredVersion, open_version, read_faiss, verify
from koembed.lexical import Analyzer, BM25Retriever, LexicalConfig
from koembed.models import EncodeOptions, Encoder
from koembed.models.m3 import M3Encoder, m3_encoder
from koembed.ranking import TIE_SLACK, Hit, sort_hits
from koembed.retrieval.hybrid import HybridRetriever
from koembed.retrieval.inverted import SparseIndex

MODES = ("dense", "bm25", "hybrid", "sparse")


class _DensePart:
    """The index's FAISS part seen as a Retriever, so HybridRetriever fuses it without a second fusion."""

    name = "dense"
    show_progress = False

    def __init__(self, search: Callable[[Sequence[str], int], list[list[Hit]]]):
        self._search = search

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        raise RuntimeError("an index part is built by build_index, not fitted")

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self._search(queries, k)

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        raise SpecError("an index part scores only through search")


class Index:
    """A loaded index (see :func:`load_index`): search it, read its passages.

    The model is loaded (and checked) on the first dense or hybrid search unless given to :func:`load_index`;
    BM25 maps its stored segments at load and reads only the postings a query needs, so each mode pays only
    for what it uses.
    """

    def __init__(self, path: Path, state: IndexState | StoredVersion, encoder: Encoder | None = None,
                 options: EncodeOptions = EncodeOptions(show_progress=False), device: str | None = None):
        import numpy as np

        self.path = path
        self.manifest = state.manifest
        self.options = options
        self._device = device
        self._tombstones = state.tombstones
        self._encoder = encoder
        self._bm25: BM25Retriever | None = None
        self._sparse: SparseIndex | None = None
        self._m3: M3Encoder | None = None
        self._full: IndexState | None = None  # every row in memory (read on demand for a StoredVersion)
        self._corpus: dict[str, str] | None = None
        self._dense_files: Sequence[BinaryIO] | None
        if isinstance(state, StoredVersion):
            self._rows: Sequence[str] = state.rows
            self._pids = state.rows.pids
            self._faiss, self._dense_files = None, state.dense
        else:
            self._full, self._rows = state, state.doc_ids
            self._pids = np.asarray(state.pids, dtype=np.int64)
            self._faiss, self._dense_files = state.faiss_index, None
        # mapped now, while this version's folder surely exists (an update removes it after switching)
        self._stored = None if self.manifest.lexical is None else stored_fields(
            path / self.manifest.version_dir, self.manifest.lexical, self.manifest.bm25, self._pids)

    def __len__(self) -> int:
        return len(self._rows)

    def _all(self) -> IndexState:
        """Every row in memory: what listing ids or texts, sparse search and an old index's BM25 need."""
        if self._full is None:
            rows = self._rows
            assert isinstance(rows, StoredRows)
            read = rows.read_all()
            sparse = [r[4] for r in read if r[4] is not None]
            self._full = IndexState(self.manifest, None, [r[0] for r in read], [r[1] for r in read],
                                    [r[2] for r in read], [r[3] for r in read], self._tombstones,
                                    sparse if sparse else None)
        return self._full

    @property
    def doc_ids(self) -> list[str]:
        """Live passage ids, in insertion order."""
        return list(self._all().doc_ids)

    @property
    def passages(self) -> Mapping[str, str]:
        """Read-only ``{doc_id: text}`` of the live passages."""
        state = self._all()
        return MappingProxyType(dict(zip(state.doc_ids, state.texts)))

    def text(self, doc_id: str) -> str:
        """The passage text of ``doc_id`` (KeyError if the index does not hold it)."""
        if isinstance(self._rows, StoredRows):
            row = self._rows.find(doc_id)
            if row is None:
                raise KeyError(doc_id)
            return self._rows.row(row)[2]
        if self._corpus is None:
            self._corpus = dict(zip(self._all().doc_ids, self._all().texts))
        return self._corpus[doc_id]

    @property
    def encoder(self) -> Encoder:
        """The embedding model, loaded from the manifest on first use and checked against the index."""
        if self._encoder is None:
            self._encoder = checked_encoder(None, self.manifest, self.path, device=self._device)
        return self._encoder

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense") -> list[list[Hit]]:
        """Top-``k`` ``(doc_id, score)`` per query, best first, ties by ascending doc id.

        ``dense``: cosine similarity (FAISS); ``bm25``: BM25 score, only passages sharing a term with the
        query; ``hybrid``: the fusion of both the index was built with (HybridRetriever, each part's top
        max(k, 100); reciprocal-rank fusion unless ``koembed index build --fusion`` chose another);
        ``sparse`` (an index built with a bge-m3-layout model): BGE-M3 lexical matching score from the stored
        weights, rebuilt as an in-memory inverted index on first use (:class:`koembed.retrieval.inverted.SparseIndex`).
        """
        if mode in ("colbert", "m3"):
            raise SpecError(f"{self.path}: the FAISS store keeps no ColBERT vectors, which {mode} search needs: "
                            "build the index with --store qdrant, or move it there with koembed index export")
        if mode not in MODES:
            raise SpecError(f"unknown search mode {mode!r}: use {', '.join(MODES)}")
        queries = list(queries)
        if k < 1:
            raise SpecError(f"k must be at least 1, not {k}")
        if not len(self._rows):
            return [[] for _ in queries]
        if mode == "dense":
            return self._dense_search(queries, k)
        if mode == "bm25":
            return self._bm25_part().search(queries, k)
        if mode == "sparse":
            return self._sparse_search(queries, k)
        fusion = self.manifest.fusion
        hybrid = HybridRetriever([self._bm25_part(), _DensePart(self._dense_search)], fusion=fusion["fusion"],
                                 weights=fusion["weights"], rrf_k=fusion["rrf_k"], name="hybrid:bm25+dense")
        return hybrid.search(queries, k)

    def _sparse_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        stored_sparse = self._all().sparse
        if stored_sparse is None:
            raise SpecError(f"{self.path} holds no lexical weights: sparse search needs an index built with a "
                            "bge-m3-layout model (sparse_linear.pt and colbert_linear.pt beside its weights)")
        if self._sparse is None:
            self._m3 = m3_encoder(self.manifest.model["resolved"], self.encoder)
            self._sparse = SparseIndex(self._all().doc_ids, stored_sparse, len(self._m3.tokenizer))
        m3 = self._m3
        assert m3 is not None  # set with the sparse index above
        weights = m3.encode(queries, with_prompt(self.options, self.manifest, "query"), None, dense=False,
                            colbert=False).sparse
        return self._sparse.search(weights, k)

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer the index was built with (and its user dictionary), loaded on first use."""
        return self._bm25_part().tokenizer

    @property
    def bm25_retriever(self) -> BM25Retriever:
        """The index's BM25 half (what ``search(mode="bm25")`` runs), created on first use: for what the modes
        do not expose, e.g. ``bm25_retriever.search(queries, k, prune=False)`` to time MaxScore against scoring
        every passage (bench/bm25_pruning.py)."""
        return self._bm25_part()

    def _bm25_part(self) -> BM25Retriever:
        if self._bm25 is None:
            config = LexicalConfig.from_dict(self.manifest.bm25)
            self._bm25 = BM25Retriever(config, show_progress=False,
                                       user_dict=recorded_user_dict(self.path, self.manifest.bm25))
            if isinstance(self._rows, StoredRows) and self._stored is not None:
                self._bm25.use_fields(self._rows, self._stored.fields, ranks=self._rows.ranks(),
                                      candidates=self._stored.top_candidates)
            elif self._stored is not None:
                self._bm25.use_fields(self._rows, self._stored.fields, candidates=self._stored.top_candidates)
            else:
                state = self._all()
                self._bm25.fit_analysed(state.doc_ids, state.texts, state.tokens)
        return self._bm25

    def _dense_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import numpy as np

        k = min(k, len(self._rows))
        if not queries or k < 1:
            return [[] for _ in queries]
        vectors = embed(self.encoder, queries, with_prompt(self.options, self.manifest, "query"))
        if self._faiss is None:
            assert self._dense_files is not None
            self._faiss = read_faiss(self._dense_files, self.manifest, self.path / self.manifest.version_dir,
                                     len(self._rows), len(self._tombstones))
            for handle in self._dense_files:
                handle.close()
        live = self._pids
        total = self._faiss.ntotal
        fetch = min(total, k + len(self._tombstones) + TIE_SLACK)
        results: list[list[Hit]] = [[] for _ in queries]
        todo = list(range(len(queries)))
        while todo:
            scores, pids = self._faiss.search(np.ascontiguousarray(vectors[todo]), fetch)
            again = []
            for row, qi in enumerate(todo):
                raw = [(int(p), float(s)) for s, p in zip(scores[row], pids[row]) if p != -1]
                at = [int(np.searchsorted(live, p)) for p, _ in raw]
                hits = sort_hits((self._rows[int(r)], s) for (p, s), r in zip(raw, at)
                                 if r < len(live) and live[r] == p)
                more_exist = len(raw) == fetch and fetch < total
                # Fetch more if tombstones ate into the top k, or the k-th score ties with unseen candidates.
                if more_exist and (len(hits) < k or raw[-1][1] >= hits[k - 1][1]):
                    again.append(qi)
                else:
                    results[qi] = hits[:k]
            todo, fetch = again, min(total, fetch * 2)
        return results


def load_index(index_dir: str | Path, encoder: Encoder | None = None, *,
               options: EncodeOptions = EncodeOptions(show_progress=False), device: str | None = None,
               verify: bool = False) -> Index:
    """Load an index for search, in constant time for an index from 0.5 on.

    What is checked when (docs/RELIABILITY.md): now, the manifest, every file's size, and the sha256 of the
    small files; each passage row as a search reads it; the vectors at the first dense search. ``verify``
    (and every index built before 0.5) reads every row and checks every file's sha256 now, as
    ``koembed index info`` and every update do.

    ``encoder`` (a loaded model) is checked now: a different embedding dimension, or different embeddings of
    the probe text, is a :class:`~koembed.errors.ModelMismatchError`. Without it the manifest's model is loaded
    (on ``device``) at the first dense search. Damaged files are an :class:`~koembed.errors.IndexStoreError`.
    """
    index_dir = Path(index_dir)
    state = open_version(index_dir, verify_all=verify)
    checked = checked_encoder(encoder, state.manifest, index_dir, device=device) if encoder is not None else None
    return Index(index_dir, state, checked, options=options, device=device)


def index_info(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of a verified index (every file's sha256 checked), without the model probe vector."""
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    verify(index_dir, manifest)
    info = manifest.to_dict()
    info["model"] = {k: v for k, v in info["model"].items() if k != "probe"}
    return {"path": str(index_dir.resolve()), **info}
