"""``manifest.json`` of an index folder: what it holds, and which version folder is current.

Layout of an index folder::

    manifest.json      the current version: model, dimension, kind and parameters, counts, sha256 of each file
    v000003/           one folder per version, complete before manifest.json names it
      dense.faiss      faiss.write_index of the vectors; faiss ids are stable int64 passage ids ("pids")
      passages.jsonl   {"pid", "id", "text", "tokens"} per live passage; tokens are BM25's Kiwi morphemes
      tombstones.json  pids deleted from the passages but still in an HNSW graph (HNSW cannot remove)
      passages.rows.npy  per row: pid, byte offset in passages.jsonl, doc-id order (koembed.index.rows; 0.5 on)
      lex.s000001.*.npy  the BM25 fields' postings, one segment per build chunk or add (koembed.index.bm25_store)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError, SpecError
from koembed.files import inside, listed_files
from koembed.files import read_manifest as read_json_manifest
from koembed.index.bm25_store import check_record, segment_names
from koembed.index.rows import ROWS_FILE
from koembed.lexical import DEFAULT as DEFAULT_LEXICAL
from koembed.lexical import LexicalConfig
from koembed.ranking import RRF_K

FORMAT_VERSION = 1
KINDS = ("flat", "hnsw", "ivf")
MANIFEST = "manifest.json"
DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE = "dense.faiss", "passages.jsonl", "tombstones.json"
VERSION_FILES = (DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE)
VERSION_RE = re.compile(r"^v\d{6}$")
DEFAULT_FUSION = {"fusion": "rrf", "weights": None, "rrf_k": RRF_K}  # hybrid search: BM25 half first, then dense
REMEDY = "rebuild the index"
# JSON types of the manifest fields that updates compute with (the others are only displayed).
FIELD_TYPES = {"kind": str, "params": dict, "model": dict, "dimension": int, "bm25": dict, "counts": dict,
               "next_id": int, "version_dir": str}


@dataclass(frozen=True)
class IndexParams:
    """What to build: the FAISS ``kind`` and its settings (HNSW graph degree and beam widths; IVF lists and lists
    probed, None for the defaults of :func:`koembed.index.faiss.faiss_index_params`), and the ``lexical`` fields
    of the BM25 half (default: the best measured, :data:`koembed.lexical.DEFAULT`), and how ``hybrid`` search fuses
    the BM25 and dense halves (``fusion``, ``weights`` for BM25 then dense, ``rrf_k``: :data:`DEFAULT_FUSION` is
    reciprocal-rank fusion; ``koembed tune-fusion`` fits a better one for a given model)."""

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int | None = None
    lexical: LexicalConfig = DEFAULT_LEXICAL
    fusion: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FUSION))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"unknown index kind {self.kind!r}: use {', '.join(KINDS)}")


@dataclass(kw_only=True)
class IndexManifest:
    """What the manifests of every store record (FAISS: :class:`Manifest`, Qdrant:
    :class:`koembed.index.qdrant.QdrantManifest`): the model, the embedding dimension, the BM25 half, counts
    and times. What reads an index's model or prompts (:mod:`koembed.index.encoder`) takes this base.

    ``model``: ``name`` as given, ``resolved`` (alias -> folder, local folder -> absolute path), ``local``
    (reload from ``resolved`` rather than ``name``), ``backend``, ``prompts`` and ``probe`` (the embedding of
    :data:`koembed.index.encoder.PROBE_TEXT`). ``normalized_by``: ``model`` if the model ends in a Normalize
    layer, else ``koembed``.
    """

    model: dict[str, Any]
    dimension: int
    normalized_by: str
    bm25: dict[str, Any]
    counts: dict[str, int]
    created: str
    updated: str
    similarity: str = "cosine"
    koembed_version: str = ""


@dataclass(kw_only=True)
class Manifest(IndexManifest):
    """What a FAISS index's ``manifest.json`` records; :meth:`to_dict` is its JSON form.

    ``counts``: ``passages`` (live), ``deleted`` (ever deleted), ``tombstones`` (HNSW vectors awaiting removal).
    ``files``: sha256 of every file in ``version_dir``; ``sizes``: their byte sizes, what a load checks (absent
    before 0.5: such an index is loaded in full and every sha256 checked, as then).
    """

    kind: str
    params: dict[str, Any]
    next_id: int
    version_dir: str = ""
    files: dict[str, str] = field(default_factory=dict)
    fusion: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FUSION))  # absent before 0.1: RRF
    format_version: int = FORMAT_VERSION
    faiss_version: str = ""
    lexical: dict[str, Any] | None = None  # the stored BM25 segments (koembed.index.bm25_store); absent before 0.4
    sizes: dict[str, int] | None = None  # byte size per file; with it the version has passages.rows.npy (0.5 on)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> Manifest:
        names = set(cls.__dataclass_fields__)
        missing = sorted(n for n in names if n not in data and n not in ("fusion", "lexical", "sizes"))
        if missing:
            raise IndexStoreError(f"{path}: manifest lacks {', '.join(missing)}; {REMEDY}")
        for name, kind in {**FIELD_TYPES, **({"fusion": dict} if "fusion" in data else {})}.items():
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise IndexStoreError(f"{path}: field '{name}' should be a JSON {kind.__name__}, not "
                                      f"{data[name]!r}; {REMEDY}")
        return cls(**{n: data[n] for n in names if n in data})  # an index built before fusions: RRF


def read_manifest(index_dir: Path) -> Manifest:
    """The index's manifest, checked to be one this koembed reads: ``version_dir`` is a version folder inside
    ``index_dir`` and ``files`` lists exactly the files of a version (so every one of them is verified)."""
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    data = read_json_manifest(path, IndexStoreError, format=None, version=FORMAT_VERSION, remedy=REMEDY)
    manifest = Manifest.from_dict(data, path)
    if not VERSION_RE.match(manifest.version_dir):
        raise IndexStoreError(f"{path}: version_dir: {manifest.version_dir!r} is not a version folder name such as "
                              f"v000001; {REMEDY}")
    inside(index_dir, manifest.version_dir, IndexStoreError, f"{path}: version_dir", REMEDY)
    check_record(manifest.lexical, str(path), REMEDY)
    LexicalConfig.from_dict(manifest.bm25, f"{path}: bm25")
    listed_files(manifest.files, version_files(manifest), IndexStoreError, str(path), REMEDY)
    sizes = manifest.sizes
    if sizes is not None and (not isinstance(sizes, dict) or set(sizes) != set(manifest.files) or not all(
            type(v) is int and v >= 0 for v in sizes.values())):
        raise IndexStoreError(f"{path}: 'sizes' must give the byte size of each file of 'files'; {REMEDY}")
    return manifest


def version_files(manifest: Manifest) -> list[str]:
    """Every file a version folder of ``manifest`` holds (each checksummed in ``files``)."""
    rows = [ROWS_FILE] if manifest.sizes is not None else []
    return [*VERSION_FILES, *rows, *segment_names(manifest.lexical, manifest.bm25)]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
