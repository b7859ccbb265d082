"""A persistent search index on disk: FAISS vectors, Kiwi/BM25 tokens and the passages, updated atomically.

Layout of an index folder::

    manifest.json      the current version: model, dimension, kind and parameters, counts, sha256 of each file
    v000003/           one folder per version, complete before manifest.json names it
      dense.faiss      faiss.write_index of the vectors; faiss ids are stable int64 passage ids ("pids")
      passages.jsonl   {"pid", "id", "text", "tokens"} per live passage; tokens are BM25's Kiwi morphemes
      tombstones.json  pids deleted from the passages but still in an HNSW graph (HNSW cannot remove)

Why versions: every change (build, add, delete) writes a whole new version folder, then replaces
``manifest.json`` with ``os.replace``, and only then removes the previous folder. A crash at any point leaves
``manifest.json`` naming a complete folder, so the previous index stays loadable; the next update removes
what an interrupted one left behind. Updates of one folder are serialised by a lock file (POSIX). Loading
checks every file's sha256, so a truncated or altered file is an error, not silently wrong results.
Nothing is pickled: faiss's own format, JSON and JSON lines only.

Dense part: cosine similarity as inner product of L2-normalised embeddings (koembed normalises when the
model does not, and records which). ``flat`` is exact (IndexFlatIP); ``hnsw`` (IndexHNSWFlat: M=32,
efConstruction=200, efSearch=128) and ``ivf`` (IndexIVFFlat, nlist ~ 4 sqrt(n) trained on the corpus) are
approximate. Deleted passages are removed from flat and IVF; HNSW keeps them as tombstones that search skips
(it over-fetches by their number) until they outnumber live vectors, when the graph is rebuilt without them.

Lexical part: koembed's BM25 (:class:`koembed.lexical.BM25Retriever`); each passage's tokens are stored, so
loading rebuilds BM25 from them without re-analysing any text (IDF depends on the whole corpus, so the BM25
statistics are recomputed from the tokens rather than stored).

Hits are ``(doc_id, score)``, best first, ties by ascending doc id, as every koembed retriever returns them;
``hybrid`` is :class:`koembed.retrieve.HybridRetriever`'s reciprocal-rank fusion of the two parts.
Adding an id that is already indexed is an error (delete it first, then add): silent replacement would hide
duplicate ids in the input.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from koembed.errors import DataError, KoembedError, SpecError
from koembed.retrieve import Hit

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KINDS = ("flat", "hnsw", "ivf")
MODES = ("dense", "bm25", "hybrid")
MANIFEST = "manifest.json"
DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE = "dense.faiss", "passages.jsonl", "tombstones.json"
VERSION_RE = re.compile(r"^v\d{6}$")
TMP_PREFIX = ".tmp-"
# A fixed text embedded at build time: a model that embeds it differently at load time is not the index's model.
PROBE_TEXT = "koembed 색인 점검 문장: 전세 보증금은 계약이 끝나면 언제 돌려받을 수 있나요?"
PROBE_MIN_COSINE = 0.99  # same model on another device or precision stays far above this
TIE_SLACK = 16  # extra candidates per dense search so ties at the k-th score are ordered by doc id
IVF_MIN_POINTS_PER_LIST = 39  # faiss's k-means warns below 39 training points per centroid


class IndexStoreError(KoembedError):
    """The index folder is missing, damaged, or cannot take the requested change."""


class ModelMismatchError(IndexStoreError):
    """The model given is not the one the index was built with (other dimension or other embeddings)."""


class DocumentIdError(IndexStoreError):
    """Adding an id the index already holds, or deleting one it does not hold."""


@dataclass
class Manifest:
    """What ``manifest.json`` records; :meth:`to_dict` is its JSON form.

    ``model``: ``name`` as given, ``resolved`` (alias -> folder, local folder -> absolute path), ``local``
    (reload from ``resolved`` rather than ``name``) and ``probe`` (the embedding of :data:`PROBE_TEXT`).
    ``normalized_by``: ``model`` if the model ends in a Normalize layer, else ``koembed``.
    ``counts``: ``passages`` (live), ``deleted`` (ever deleted), ``tombstones`` (HNSW vectors awaiting removal).
    ``files``: sha256 of every file in ``version_dir``.
    """

    kind: str
    params: dict[str, Any]
    model: dict[str, Any]
    dimension: int
    normalized_by: str
    bm25: dict[str, Any]
    counts: dict[str, int]
    next_id: int
    created: str
    updated: str
    version_dir: str = ""
    files: dict[str, str] = field(default_factory=dict)
    similarity: str = "cosine"
    format_version: int = FORMAT_VERSION
    koembed_version: str = ""
    faiss_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> Manifest:
        if not isinstance(data, Mapping):
            raise IndexStoreError(f"{path}: not a koembed index manifest (expected a JSON object)")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexStoreError(f"{path}: index format {data.get('format_version')!r} is not supported by this "
                                  f"koembed (format {FORMAT_VERSION}); rebuild the index")
        names = set(cls.__dataclass_fields__)
        missing = sorted(n for n in names if n not in data)
        if missing:
            raise IndexStoreError(f"{path}: manifest lacks {', '.join(missing)}; rebuild the index")
        return cls(**{n: data[n] for n in names})


@dataclass
class _State:
    """One version of an index in memory; updates change it and commit it as the next version."""

    manifest: Manifest
    faiss_index: Any
    pids: list[int]
    doc_ids: list[str]
    texts: list[str]
    tokens: list[list[str]]
    tombstones: set[int]


# --------------------------------------------------------------------------- building and updating


def build_index(model_name: str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path,
                kind: str = "flat", batch_size: int = 32, show_progress: bool = True, *, model: Any = None,
                hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
                nprobe: int | None = None, precision: str = "fp32", backend: str = "torch") -> Manifest:
    """Embed and tokenise the passages and write a new index to ``out_dir`` (which must be new or empty).

    ``model_name`` is a hub id, local folder or ``minilm``, recorded so that :func:`load_index` and
    :func:`add_documents` can reload it; pass ``model`` to reuse one already loaded from that name
    (``precision`` and ``backend`` apply only when it is loaded here; the backend is recorded, and searches
    load the model with it).
    ``nlist`` defaults to 4 sqrt(n), lowered so each list gets >= 39 training passages (a tiny corpus gets
    fewer lists; the manifest's ``params.note`` says so). ``nprobe`` defaults to min(nlist, max(8, nlist/16)).
    Everything is computed before anything is written: bad input leaves no folder behind.
    """
    from koembed.models import load_model

    doc_ids, texts, out_dir = _checked_new_build(kind, doc_ids, texts, out_dir)
    if model is None:
        model = load_model(model_name, precision=precision, backend=backend)
    vectors = _embed(model, texts, batch_size, show_progress)
    return _write_new_index(model_name, model, doc_ids, texts, vectors, out_dir, kind, show_progress,
                            hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search, nlist=nlist,
                            nprobe=nprobe)


def build_index_from_embeddings(model_name: str, embedding_dirs: Sequence[str | Path], doc_ids: Sequence[str],
                                texts: Sequence[str], out_dir: str | Path, kind: str = "flat",
                                show_progress: bool = True, *, model: Any = None, hnsw_m: int = 32,
                                ef_construction: int = 200, ef_search: int = 128, nlist: int | None = None,
                                nprobe: int | None = None, precision: str = "fp32",
                                backend: str = "torch") -> Manifest:
    """:func:`build_index` with the vectors read from ``koembed encode`` shards instead of computed.

    ``embedding_dirs`` are ``koembed encode --out`` folders (or shard folders); all shards of one run must be
    there and complete, made with ``model_name`` from exactly these passages in this order
    (:func:`koembed.encode.read_embeddings` checks it all, before anything is written). The model is still
    loaded, once, for the probe embedding and normalisation record that :func:`load_index` checks against.
    """
    from koembed.encode import read_embeddings
    from koembed.models import load_model

    doc_ids, texts, out_dir = _checked_new_build(kind, doc_ids, texts, out_dir)
    vectors, stored = read_embeddings(embedding_dirs, doc_ids, texts, model_name=model_name)
    if model is None:
        model = load_model(model_name, precision=precision, backend=backend)
    dimension = _embed(model, [PROBE_TEXT], 1, show_progress=False).shape[1]
    if dimension != stored["dimension"]:
        raise ModelMismatchError(f"the embeddings have {stored['dimension']} dimensions but {model_name} gives "
                                 f"{dimension}: they were not made by this model")
    return _write_new_index(model_name, model, doc_ids, texts, _normalized(vectors), out_dir, kind, show_progress,
                            hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search, nlist=nlist,
                            nprobe=nprobe)


def _checked_new_build(kind: str, doc_ids: Sequence[str], texts: Sequence[str],
                       out_dir: str | Path) -> tuple[list[str], list[str], Path]:
    """The checks every build makes before any work: known kind, valid passages, a new output folder."""
    if kind not in KINDS:
        raise SpecError(f"unknown index kind {kind!r}: use {', '.join(KINDS)}")
    doc_ids, texts = _checked_documents(doc_ids, texts)
    out_dir = Path(out_dir)
    _require_new_folder(out_dir)
    return doc_ids, texts, out_dir


def _write_new_index(model_name: str, model: Any, doc_ids: list[str], texts: list[str], vectors: np.ndarray,
                     out_dir: Path, kind: str, show_progress: bool, *, hnsw_m: int, ef_construction: int,
                     ef_search: int, nlist: int | None, nprobe: int | None) -> Manifest:
    """Tokenise, build FAISS from normalised float32 ``vectors`` (row i = passage i) and commit version 1."""
    from koembed.lexical import KiwiTokenizer

    tokens = KiwiTokenizer()(texts, show_progress=show_progress)
    params = faiss_index_params(kind, len(texts), hnsw_m, ef_construction, ef_search, nlist, nprobe)
    index = new_faiss_index(kind, vectors.shape[1], params, vectors)
    pids = list(range(len(doc_ids)))
    index.add_with_ids(vectors, np.array(pids, dtype=np.int64))
    now = _now()
    manifest = Manifest(kind=kind, params=params, model=_model_record(model_name, model),
                        dimension=int(vectors.shape[1]), normalized_by=_normalized_by(model),
                        bm25=_bm25_record(), counts={"passages": len(pids), "deleted": 0, "tombstones": 0},
                        next_id=len(pids), created=now, updated=now)
    state = _State(manifest, index, pids, doc_ids, texts, tokens, set())
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out_dir):
            _require_new_folder(out_dir)  # another build may have won the race
            return _commit(out_dir, state)
    except BaseException:
        if created and not (out_dir / MANIFEST).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def add_documents(index_dir: str | Path, doc_ids: Sequence[str], texts: Sequence[str], *, model: Any = None,
                  batch_size: int = 32, show_progress: bool = False) -> Manifest:
    """Add passages to an index as a new version. An id already in the index is a :class:`DocumentIdError`
    (delete it first, then add). The model is reloaded from the manifest unless ``model`` is given (it is
    checked against the index either way)."""
    from koembed.lexical import KiwiTokenizer

    doc_ids, texts = _checked_documents(doc_ids, texts)
    index_dir = Path(index_dir)

    def change(state: _State) -> None:
        present = set(state.doc_ids)
        clashes = [d for d in doc_ids if d in present]
        if clashes:
            raise DocumentIdError(f"{index_dir}: already indexed: {_some(clashes)}; delete them first "
                                  "(koembed index delete), then add")
        encoder = _checked_model(model, state.manifest, index_dir)
        vectors = _embed(encoder, texts, batch_size, show_progress)
        new_pids = list(range(state.manifest.next_id, state.manifest.next_id + len(doc_ids)))
        state.faiss_index.add_with_ids(vectors, np.array(new_pids, dtype=np.int64))
        state.pids += new_pids
        state.doc_ids += doc_ids
        state.texts += texts
        state.tokens += KiwiTokenizer()(texts, show_progress=show_progress)
        state.manifest.next_id += len(doc_ids)

    return _update(index_dir, change)


def delete_documents(index_dir: str | Path, doc_ids: Sequence[str]) -> Manifest:
    """Delete passages by id as a new version. An id the index does not hold is a :class:`DocumentIdError`
    naming it, and nothing is deleted."""
    index_dir = Path(index_dir)
    wanted = list(dict.fromkeys(doc_ids))
    if not wanted:
        raise DocumentIdError(f"{index_dir}: no ids to delete")

    def change(state: _State) -> None:
        row_of = {doc: row for row, doc in enumerate(state.doc_ids)}
        unknown = [d for d in wanted if d not in row_of]
        if unknown:
            raise DocumentIdError(f"{index_dir}: no passage with id {_some(unknown)}; nothing was deleted")
        drop = {row_of[d] for d in wanted}
        gone = np.array([state.pids[r] for r in sorted(drop)], dtype=np.int64)
        if state.manifest.kind == "hnsw":  # HNSW graphs cannot remove nodes: skip them at search time
            state.tombstones.update(int(p) for p in gone)
        else:
            state.faiss_index.remove_ids(gone)
        keep = [r for r in range(len(state.pids)) if r not in drop]
        for name in ("pids", "doc_ids", "texts", "tokens"):
            values = getattr(state, name)
            setattr(state, name, [values[r] for r in keep])
        state.manifest.counts["deleted"] += len(drop)
        if state.tombstones and len(state.tombstones) > state.faiss_index.ntotal / 2:
            _compact_hnsw(state)

    return _update(index_dir, change)


def index_info(index_dir: str | Path) -> dict[str, Any]:
    """The manifest of a verified index (checksums checked), without the model probe vector."""
    index_dir = Path(index_dir)
    manifest = _read_manifest(index_dir)
    _verify_files(index_dir, manifest)
    info = manifest.to_dict()
    info["model"] = {k: v for k, v in info["model"].items() if k != "probe"}
    return {"path": str(index_dir.resolve()), **info}


# --------------------------------------------------------------------------- loading and searching


class _DensePart:
    """The index's FAISS part seen as a Retriever, so HybridRetriever fuses it without a second fusion."""

    name = "dense"

    def __init__(self, search: Callable[[Sequence[str], int], list[list[Hit]]]):
        self._search = search

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        raise RuntimeError("an index part is built by build_index, not fitted")

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self._search(queries, k)


class Index:
    """A loaded index (see :func:`load_index`): search it, read its passages.

    The model is loaded (and checked) on the first dense or hybrid search unless given to :func:`load_index`,
    and BM25 is rebuilt from the stored tokens on the first bm25 or hybrid search, so each mode pays only
    for what it uses.
    """

    def __init__(self, path: Path, state: _State, model: Any = None, batch_size: int = 32,
                 device: str | None = None):
        self.path = path
        self.manifest = state.manifest
        self.batch_size = batch_size
        self._device = device
        self._faiss = state.faiss_index
        self._doc_ids, self._texts, self._tokens = state.doc_ids, state.texts, state.tokens
        self._row_of_pid = {pid: row for row, pid in enumerate(state.pids)}
        self._corpus = dict(zip(state.doc_ids, state.texts))
        self._tombstones = state.tombstones
        self._model = model
        self._bm25 = None

    def __len__(self) -> int:
        return len(self._doc_ids)

    @property
    def doc_ids(self) -> list[str]:
        """Live passage ids, in insertion order."""
        return list(self._doc_ids)

    @property
    def passages(self) -> Mapping[str, str]:
        """Read-only ``{doc_id: text}`` of the live passages."""
        return MappingProxyType(self._corpus)

    def text(self, doc_id: str) -> str:
        """The passage text of ``doc_id`` (KeyError if the index does not hold it)."""
        return self._corpus[doc_id]

    @property
    def model(self) -> Any:
        """The embedding model, loaded from the manifest on first use and checked against the index."""
        if self._model is None:
            self._model = _checked_model(None, self.manifest, self.path, device=self._device)
        return self._model

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense") -> list[list[Hit]]:
        """Top-``k`` ``(doc_id, score)`` per query, best first, ties by ascending doc id.

        ``dense``: cosine similarity (FAISS); ``bm25``: BM25 score, only passages sharing a term with the
        query; ``hybrid``: reciprocal-rank fusion of both (HybridRetriever, each part's top max(k, 100)).
        """
        from koembed.retrieve import HybridRetriever

        if mode not in MODES:
            raise SpecError(f"unknown search mode {mode!r}: use {', '.join(MODES)}")
        queries = list(queries)
        if k < 1:
            raise SpecError(f"k must be at least 1, not {k}")
        if not self._doc_ids:
            return [[] for _ in queries]
        if mode == "dense":
            return self._dense_search(queries, k)
        if mode == "bm25":
            return self._bm25_part().search(queries, k)
        hybrid = HybridRetriever([_DensePart(self._dense_search), self._bm25_part()], fusion="rrf",
                                 name="hybrid:dense+bm25")
        return hybrid.search(queries, k)

    def _bm25_part(self):
        if self._bm25 is None:
            self._bm25 = _bm25_from_tokens(self._doc_ids, self._tokens, self.manifest.bm25)
        return self._bm25

    def _dense_search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self._doc_ids))
        if not queries or k < 1:
            return [[] for _ in queries]
        vectors = _embed(self.model, queries, self.batch_size, show_progress=False)
        total = self._faiss.ntotal
        fetch = min(total, k + len(self._tombstones) + TIE_SLACK)
        results: list[list[Hit]] = [[] for _ in queries]
        todo = list(range(len(queries)))
        while todo:
            scores, pids = self._faiss.search(np.ascontiguousarray(vectors[todo]), fetch)
            again = []
            for row, qi in enumerate(todo):
                raw = [(int(p), float(s)) for s, p in zip(scores[row], pids[row]) if p != -1]
                hits = sorted(((self._doc_ids[self._row_of_pid[p]], s) for p, s in raw if p in self._row_of_pid),
                              key=lambda h: (-h[1], h[0]))
                more_exist = len(raw) == fetch and fetch < total
                # Fetch more if tombstones ate into the top k, or the k-th score ties with unseen candidates.
                if more_exist and (len(hits) < k or raw[-1][1] >= hits[k - 1][1]):
                    again.append(qi)
                else:
                    results[qi] = hits[:k]
            todo, fetch = again, min(total, fetch * 2)
        return results


def load_index(index_dir: str | Path, model: Any = None, *, batch_size: int = 32,
               device: str | None = None) -> Index:
    """Load an index, verifying every file's sha256 against the manifest.

    ``model`` (a name or a loaded SentenceTransformer) is checked now: a different embedding dimension, or
    different embeddings of the probe text, is a :class:`ModelMismatchError`. Without ``model`` the
    manifest's model is loaded on the first dense search. Damaged files are an :class:`IndexStoreError`.
    """
    index_dir = Path(index_dir)
    state = _read_state(index_dir)
    checked = _checked_model(model, state.manifest, index_dir, device=device) if model is not None else None
    return Index(index_dir, state, checked, batch_size=batch_size, device=device)


# --------------------------------------------------------------------------- model and vectors


def _embed(model: Any, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
    """Embeddings as float32, L2-normalised, so inner product is cosine (a no-op for normalising models)."""
    from koembed.models import encode

    return _normalized(encode(model, texts, batch_size=batch_size, show_progress=show_progress))


def _normalized(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as contiguous float32 with unit rows (in place when already so), as the index stores them."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    faiss.normalize_L2(vectors)
    return vectors


def _normalized_by(model: Any) -> str:
    modules = model.modules() if hasattr(model, "modules") else []
    return "model" if any(type(m).__name__ == "Normalize" for m in modules) else "koembed"


def _model_record(name: str, model: Any) -> dict[str, Any]:
    from koembed.models import MODEL_ALIASES, model_identity

    identity = model_identity(name)
    local = name not in MODEL_ALIASES and Path(name).expanduser().is_dir()
    probe = _embed(model, [PROBE_TEXT], 1, show_progress=False)[0]
    return {**identity, "local": local, "backend": getattr(model, "backend", "torch"),
            "probe": [round(float(v), 7) for v in probe]}


def _checked_model(model: Any, manifest: Manifest, index_dir: Path, device: str | None = None) -> Any:
    """``model`` (a name, a loaded model, or None for the manifest's) loaded and checked against the index."""
    from koembed.models import load_model

    record = manifest.model
    if model is None:
        label = record["name"]
        model = load_model(record["resolved"] if record["local"] else record["name"], device=device,
                           backend=record.get("backend", "torch"))
    elif isinstance(model, (str, Path)):
        label = str(model)
        model = load_model(str(model), device=device)
    else:
        label = type(model).__name__
    probe = _embed(model, [PROBE_TEXT], 1, show_progress=False)[0]
    built = f"{index_dir} was built with {record['name']} ({manifest.dimension} dimensions)"
    if probe.shape[0] != manifest.dimension:
        raise ModelMismatchError(f"{built}, but {label} gives {probe.shape[0]}-dimensional embeddings: search "
                                 "with the index's own model, or rebuild the index with this one")
    cosine = float(probe @ np.asarray(record["probe"], dtype=np.float32))
    if cosine < PROBE_MIN_COSINE:
        raise ModelMismatchError(f"{built}, but {label} embeds the probe text differently (cosine {cosine:.3f}): "
                                 "it is another model; search with the index's own model, or rebuild")
    return model


def _bm25_record() -> dict[str, Any]:
    from importlib.metadata import version

    return {"tokenizer": "kiwi content morphemes (koembed.lexical.KiwiTokenizer)", "k1": 1.2, "b": 0.75,
            "kiwipiepy_version": version("kiwipiepy")}


def _bm25_from_tokens(doc_ids: list[str], tokens: list[list[str]], params: Mapping[str, Any]):
    """koembed's BM25Retriever fitted from stored tokens (no Kiwi analysis); queries still go through Kiwi."""
    from koembed.lexical import BM25Retriever

    bm25 = BM25Retriever(k1=params["k1"], b=params["b"], show_progress=False)
    bm25.fit_tokens(doc_ids, tokens)
    return bm25


# --------------------------------------------------------------------------- FAISS


def faiss_index_params(kind: str, n: int, hnsw_m: int, ef_construction: int, ef_search: int, nlist: int | None,
                  nprobe: int | None) -> dict[str, Any]:
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
    wanted = nlist if nlist is not None else max(1, round(4 * math.sqrt(n)))
    lists = max(1, min(wanted, n // IVF_MIN_POINTS_PER_LIST))
    params: dict[str, Any] = {"nlist": lists}
    if lists < wanted:
        params["note"] = (f"{n} passages are too few for {wanted} lists (faiss wants >= {IVF_MIN_POINTS_PER_LIST} "
                          f"training passages per list): using {lists}")
        log.warning(params["note"])
    params["nprobe"] = min(lists, nprobe if nprobe is not None else max(8, lists // 16))
    return params


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


def set_faiss_search_params(index: Any, manifest: Manifest) -> None:
    import faiss

    if manifest.kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = manifest.params["ef_search"]
    elif manifest.kind == "ivf":
        index.nprobe = manifest.params["nprobe"]


def _compact_hnsw(state: _State) -> None:
    """Rebuild the HNSW graph from its stored vectors without the tombstoned ones."""
    import faiss

    old = state.faiss_index
    ids = faiss.vector_to_array(old.id_map).astype(np.int64)
    vectors = old.index.reconstruct_n(0, old.ntotal)
    keep = ~np.isin(ids, np.fromiter(state.tombstones, dtype=np.int64, count=len(state.tombstones)))
    fresh = new_faiss_index("hnsw", state.manifest.dimension, state.manifest.params)
    fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), ids[keep])
    state.faiss_index = fresh
    state.tombstones = set()


# --------------------------------------------------------------------------- files and versions


def _checked_documents(doc_ids: Sequence[str], texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """Non-empty text ids and texts, ids unique; the same checks (and messages) as the file readers."""
    from koembed.data._checks import add_unique, text_field

    source = "documents"
    doc_ids, texts = list(doc_ids), list(texts)
    if len(doc_ids) != len(texts):
        raise DataError(source, f"{len(doc_ids)} ids but {len(texts)} texts")
    if not doc_ids:
        raise DataError(source, "no passages")
    seen: dict[str, str] = {}
    for row, (doc_id, text) in enumerate(zip(doc_ids, texts), start=1):
        add_unique(source, row, "id", text_field(source, row, "id", doc_id), text_field(source, row, "text", text),
                   seen)
    return list(seen), list(seen.values())


def _require_new_folder(out_dir: Path) -> None:
    if (out_dir / MANIFEST).exists():
        raise IndexStoreError(f"{out_dir} already holds an index: update it with koembed index add/delete, "
                              "or choose a new folder")
    if out_dir.exists() and (not out_dir.is_dir() or any(p.name != ".lock" for p in out_dir.iterdir())):
        raise IndexStoreError(f"{out_dir} exists and is not an empty folder: choose a new folder")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _some(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


@contextmanager
def _locked(index_dir: Path) -> Iterator[None]:
    """Serialise updates of one index folder across processes (POSIX advisory lock; none elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(index_dir / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fsync(path: Path) -> None:
    """Flush a file or folder to disk, so a renamed version or manifest survives a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read_manifest(index_dir: Path) -> Manifest:
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexStoreError(f"{path}: unreadable manifest ({exc})") from exc
    return Manifest.from_dict(data, path)


def _verify_files(index_dir: Path, manifest: Manifest) -> None:
    from koembed.models import sha256_file

    folder = index_dir / manifest.version_dir
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise IndexStoreError(f"{path} is missing; the index is incomplete: rebuild it")
        if sha256_file(path) != expected:
            raise IndexStoreError(f"{path} does not match its sha256 in {MANIFEST} (altered or truncated): "
                                  "the index cannot be trusted; rebuild it")


def _read_state(index_dir: Path) -> _State:
    """The current version, verified. Retries once if an update swapped versions while it was read."""
    for attempt in range(2):
        manifest = _read_manifest(index_dir)
        try:
            return _read_version(index_dir, manifest)
        except IndexStoreError:
            if attempt or _read_manifest(index_dir).version_dir == manifest.version_dir:
                raise
    raise AssertionError("unreachable")


def _read_version(index_dir: Path, manifest: Manifest) -> _State:
    import faiss

    _verify_files(index_dir, manifest)
    folder = index_dir / manifest.version_dir
    pids, doc_ids, texts, tokens = [], [], [], []
    with open(folder / PASSAGES_FILE, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            pids.append(row["pid"])
            doc_ids.append(row["id"])
            texts.append(row["text"])
            tokens.append(row["tokens"])
    tombstones = set(json.loads((folder / TOMBSTONES_FILE).read_text(encoding="utf-8")))
    index = faiss.read_index(str(folder / DENSE_FILE))
    if index.d != manifest.dimension or index.ntotal != len(pids) + len(tombstones):
        raise IndexStoreError(f"{folder}: the vectors ({index.ntotal} of dimension {index.d}) do not match the "
                              f"manifest ({len(pids)} passages + {len(tombstones)} tombstones, dimension "
                              f"{manifest.dimension}); rebuild the index")
    set_faiss_search_params(index, manifest)
    return _State(manifest, index, pids, doc_ids, texts, tokens, tombstones)


def _remove_leftovers(index_dir: Path, current: str) -> None:
    """Version folders and temporary files an interrupted update left behind."""
    for entry in index_dir.iterdir():
        if entry.is_dir() and entry.name != current and (VERSION_RE.match(entry.name)
                                                         or entry.name.startswith(TMP_PREFIX)):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_file() and entry.name.startswith(f".{MANIFEST}.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)


def _update(index_dir: Path, change: Callable[[_State], None]) -> Manifest:
    if not (index_dir / MANIFEST).is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    with _locked(index_dir):
        state = _read_state(index_dir)
        _remove_leftovers(index_dir, state.manifest.version_dir)
        state.manifest = replace(state.manifest, counts=dict(state.manifest.counts))
        change(state)
        return _commit(index_dir, state)


def _commit(index_dir: Path, state: _State) -> Manifest:
    """Write ``state`` as the next version folder, point manifest.json at it, then drop the previous folder."""
    import faiss

    from koembed import __version__
    from koembed.files import staging_dir, write_json, write_jsonl
    from koembed.models import sha256_file

    old = state.manifest.version_dir
    name = f"v{int(old[1:]) + 1 if old else 1:06d}"
    final = index_dir / name
    tmp = staging_dir(index_dir, prefix=f"{TMP_PREFIX}{name}-")
    try:
        faiss.write_index(state.faiss_index, str(tmp / DENSE_FILE))
        _fsync(tmp / DENSE_FILE)
        write_jsonl(tmp / PASSAGES_FILE, ({"pid": p, "id": d, "text": t, "tokens": k} for p, d, t, k
                                          in zip(state.pids, state.doc_ids, state.texts, state.tokens)))
        write_json(tmp / TOMBSTONES_FILE, sorted(state.tombstones))
        files = {f: sha256_file(tmp / f) for f in (DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE)}
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(index_dir)
        manifest = replace(state.manifest, version_dir=name, files=files, updated=_now(),
                           counts={**state.manifest.counts, "passages": len(state.pids),
                                   "tombstones": len(state.tombstones)},
                           koembed_version=__version__, faiss_version=faiss.__version__)
        write_json(index_dir / MANIFEST, manifest.to_dict())  # the switch: atomic replace
        _fsync(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.exists() and _current_version(index_dir) != name:
            shutil.rmtree(final, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(index_dir / old, ignore_errors=True)
    return manifest


def _current_version(index_dir: Path) -> str | None:
    try:
        return json.loads((index_dir / MANIFEST).read_text(encoding="utf-8")).get("version_dir")
    except (OSError, ValueError, AttributeError):
        return None
