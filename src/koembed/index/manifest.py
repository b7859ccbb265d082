"""``manifest.json`` of an index folder: what it holds, and which version folder is current.

docs/INDEX_FORMAT.md describes every file and field, and the format versions (:data:`FORMAT_VERSION`).
Layout of an index folder::

    manifest.json      the current version: model, dimension, kind and parameters, counts, sha256 of each file
    v000003/           one folder per version, complete before manifest.json names it
      dense.faiss      faiss.write_index of the vectors; faiss ids are stable int64 passage ids ("pids")
      passages.jsonl   {"pid", "id", "text", "tokens"} per live passage; tokens are BM25's Kiwi morphemes
      tombstones.json  pids deleted from the passages but still in an HNSW graph (HNSW cannot remove)
      passages.rows.npy  per row: pid, byte offset in passages.jsonl, doc-id order (koembed.index.rows; 0.5 on)
      lex.s000001.*.npy  the BM25 fields' postings, one segment per build chunk or add (koembed.index.bm25_store)
      passages.000002.jsonl, dense.000002.faiss, ...  the rows and vectors of each later add (``parts``; 0.6 on)

An add writes only its own passages and vectors as a new part and hard-links every earlier part into the new
version folder (:func:`koembed.index.versions.append`); any other change rewrites the version as one part.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError, KoembedError, SpecError
from koembed.files import inside, listed_files
from koembed.files import read_manifest as read_json_manifest
from koembed.index.bm25_store import check_record, segment_names
from koembed.index.rows import ROWS_FILE
from koembed.lexical import DEFAULT as DEFAULT_LEXICAL
from koembed.lexical import DEFAULT_ANALYZER, LexicalConfig, UserDict, lexical_spec
from koembed.ranking import FUSIONS, RRF_K

# The format of an index folder (docs/INDEX_FORMAT.md, "Format versions"): bumped on every change of what an index
# holds. 1: everything koembed wrote before versions were kept (its variants told apart by the fields present);
# 2: the same files, bm25.analyzer always recorded. New indexes write FORMAT_VERSION; an update keeps the version
# the index has (it writes only files and fields that version has); a reader takes OLDER_FORMATS too.
FORMAT_VERSION = 2
OLDER_FORMATS = (1,)
VERSION_REMEDY = "rebuild the index: rebuild with `koembed index build ...` from its passages"
KINDS = ("flat", "hnsw", "ivf")
MANIFEST = "manifest.json"
DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE = "dense.faiss", "passages.jsonl", "tombstones.json"
VERSION_FILES = (DENSE_FILE, PASSAGES_FILE, TOMBSTONES_FILE)
MAX_PARTS = 16  # an add past this many parts rewrites the version as one (searching many shards costs)
VERSION_RE = re.compile(r"^v\d{6}$")
DEFAULT_FUSION = {"fusion": "rrf", "weights": None, "rrf_k": RRF_K}  # hybrid search: BM25 half first, then dense
# Modes an index may record as its default search: lexical alone unless a fusion was chosen (fitted or given).
LEXICAL_MODE = "bm25"
DEFAULT_MODES = (LEXICAL_MODE, "hybrid", "dense")
REMEDY = "rebuild the index"
COUNTS = ("passages", "deleted", "tombstones")
# What bm25_record writes: the analysis, LexicalConfig.to_dict's keys, the Kiwi version.
BM25_KEYS = {"tokenizer", "weights", "normalization", "k1", "b", "kiwipiepy_version", "analyzer", "analyzer_version",
             "user_dict"}
# JSON types of the manifest fields that updates compute with (the others are only displayed).
FIELD_TYPES = {"kind": str, "params": dict, "model": dict, "dimension": int, "bm25": dict, "counts": dict,
               "next_id": int, "version_dir": str}
OPTIONAL_FIELDS = ("fusion", "mode", "lexical", "sizes", "parts")  # absent in indexes built by older versions


@dataclass(frozen=True)
class IndexParams:
    """What to build: the FAISS ``kind`` and its settings (HNSW graph degree and beam widths; IVF lists and lists
    probed, None for the defaults of :func:`koembed.index.faiss.faiss_index_params`), and the ``lexical`` fields
    of the BM25 half (default: the best measured, :data:`koembed.lexical.DEFAULT`), and how ``hybrid`` search fuses
    the BM25 and dense halves (``fusion``, ``weights`` for BM25 then dense, ``rrf_k``: :data:`DEFAULT_FUSION` is
    reciprocal-rank fusion; ``koembed tune-fusion`` fits a better one for a given model). ``mode``: the search mode
    the index records as its default (:func:`recorded_mode`; None: ``hybrid`` when ``fusion`` is not the default
    RRF, else ``bm25``, the lexical fields alone: an untuned fusion with a weak dense model loses to them)."""

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int | None = None
    lexical: LexicalConfig = DEFAULT_LEXICAL
    fusion: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FUSION))
    mode: str | None = None
    user_dict: UserDict | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"unknown index kind {self.kind!r}: use {', '.join(KINDS)}")
        if self.mode is not None and self.mode not in DEFAULT_MODES:
            raise SpecError(f"unknown default search mode {self.mode!r}: use {', '.join(DEFAULT_MODES)}")


def recorded_mode(params: IndexParams) -> str:
    """The default search mode a new index records: ``params.mode``, else ``hybrid`` only for a fusion that was
    chosen (weights or an RRF k: what ``koembed tune-fusion`` fits), else the lexical fields alone."""
    if params.mode is not None:
        return params.mode
    return LEXICAL_MODE if dict(params.fusion) == DEFAULT_FUSION else "hybrid"


def default_mode(manifest: Any) -> str:
    """The search mode ``koembed search``, ``/search`` and the playground use when none is asked for: the one the
    index recorded at build. An index built before koembed recorded one (or a Qdrant index, which records no
    fusion) gets :func:`recorded_mode` of its fusion: ``bm25`` unless it was built with a non-default one."""
    mode = getattr(manifest, "mode", "")
    if mode:
        return mode
    return recorded_mode(IndexParams(fusion=getattr(manifest, "fusion", None) or dict(DEFAULT_FUSION)))


def describe_mode(manifest: Any) -> str:
    """The default search mode as a person reads it: ``bm25 (bm25-phrase, mecab analyzer)``, ``hybrid``, ``dense``."""
    mode = default_mode(manifest)
    if mode != LEXICAL_MODE:
        return mode
    config = LexicalConfig.from_dict(manifest.bm25)
    return f"{mode} ({lexical_spec(config.with_analyzer(DEFAULT_ANALYZER))}, {config.analyzer} analyzer)"


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
    mode: str = ""  # the default search mode (recorded_mode); absent in older indexes: default_mode decides
    format_version: int = FORMAT_VERSION
    faiss_version: str = ""
    lexical: dict[str, Any] | None = None  # the stored BM25 segments (koembed.index.bm25_store); absent before 0.4
    sizes: dict[str, int] | None = None  # byte size per file; with it the version has passages.rows.npy (0.5 on)
    parts: int = 1  # passage files and dense shards: 1 + the adds since the last rewrite (part_name; 0.6 on)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["parts"] == 1:
            del data["parts"]  # as koembed wrote it before parts: an index of one part reads there too
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path) -> Manifest:
        names = set(cls.__dataclass_fields__)
        missing = sorted(n for n in names if n not in data and n not in OPTIONAL_FIELDS)
        if missing:
            raise IndexStoreError(f"{path}: manifest lacks {', '.join(missing)}; {REMEDY}")
        optional = {"fusion": dict, "mode": str, "parts": int}
        for name, kind in {**FIELD_TYPES, **{n: t for n, t in optional.items() if n in data}}.items():
            if not isinstance(data[name], kind) or isinstance(data[name], bool):
                raise IndexStoreError(f"{path}: field '{name}' should be a JSON {kind.__name__}, not "
                                      f"{data[name]!r}; {REMEDY}")
        unknown = sorted(set(data) - names)
        if unknown:
            raise IndexStoreError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; {REMEDY}")
        _check_numbers(data, path)
        if not 1 <= data.get("parts", 1) <= MAX_PARTS or (data.get("parts", 1) > 1 and data.get("sizes") is None):
            raise IndexStoreError(f"{path}: field 'parts' must be from 1 to {MAX_PARTS} (more than 1 only with "
                                  f"'sizes'), not {data['parts']!r}; {REMEDY}")
        if data.get("mode", "") not in ("", *DEFAULT_MODES):
            raise IndexStoreError(f"{path}: field 'mode' should be one of {', '.join(DEFAULT_MODES)}, not "
                                  f"{data['mode']!r}; {REMEDY}")
        return cls(**{n: data[n] for n in names if n in data})  # an index built before fusions: RRF


def _check_numbers(data: Mapping[str, Any], path: Path) -> None:
    """What updates and searches compute with must make sense: counts and ids non-negative integers, a positive
    dimension, BM25's fields, weights, k1 and b as :class:`LexicalConfig` takes them, a fusion as
    :func:`koembed.retrieval.specs.parse_fusion` makes one. Accepted silently, they gave wrong counts or scores."""
    counts = data["counts"]
    for name in COUNTS:
        value = counts.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise IndexStoreError(f"{path}: counts.{name} must be an integer >= 0, not {value!r}; {REMEDY}")
    if set(counts) - set(COUNTS):
        raise IndexStoreError(f"{path}: counts has unknown key(s) {sorted(set(counts) - set(COUNTS))}; {REMEDY}")
    if data["next_id"] < 0 or data["dimension"] < 1:
        raise IndexStoreError(f"{path}: next_id {data['next_id']} must be >= 0 and dimension {data['dimension']} "
                              f">= 1; {REMEDY}")
    bm25 = data["bm25"]
    if set(bm25) - BM25_KEYS:
        raise IndexStoreError(f"{path}: bm25 has unknown key(s) {sorted(set(bm25) - BM25_KEYS)}; {REMEDY}")
    try:
        LexicalConfig.from_dict(bm25)
    except (KeyError, TypeError, ValueError, KoembedError) as exc:
        raise IndexStoreError(f"{path}: bm25: {exc}; {REMEDY}") from None
    fusion = data.get("fusion", DEFAULT_FUSION)
    rrf_k, weights = fusion.get("rrf_k"), fusion.get("weights")
    if (set(fusion) != set(DEFAULT_FUSION) or fusion.get("fusion") not in FUSIONS
            or not isinstance(rrf_k, int) or isinstance(rrf_k, bool) or rrf_k < 1
            or not (weights is None or (isinstance(weights, list) and len(weights) == 2
                                        and all(isinstance(w, (int, float)) and 0 <= w < math.inf for w in weights)
                                        and any(w > 0 for w in weights)))):
        raise IndexStoreError(f"{path}: fusion {fusion!r} is not one koembed writes (fusion among "
                              f"{', '.join(FUSIONS)}, rrf_k an integer >= 1, weights null or two non-negative "
                              f"numbers, one positive); {REMEDY}")


def check_analyzer_recorded(data: Mapping[str, Any], path: Path, since: int = 2) -> None:
    """A manifest of format ``since`` or later records its analyzer (only format 1 may leave it out: Kiwi)."""
    if data["format_version"] >= since and "analyzer" not in (data.get("bm25") or {}):
        raise IndexStoreError(f"{path}: format version {data['format_version']} records bm25.analyzer, and this "
                              f"manifest lacks it; {REMEDY}")


def read_manifest(index_dir: Path) -> Manifest:
    """The index's manifest, checked to be one this koembed reads: ``version_dir`` is a version folder inside
    ``index_dir`` and ``files`` lists exactly the files of a version (so every one of them is verified)."""
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    data = read_json_manifest(path, IndexStoreError, format=None, version=FORMAT_VERSION, remedy=REMEDY,
                              older=OLDER_FORMATS, version_remedy=VERSION_REMEDY)
    manifest = Manifest.from_dict(data, path)
    check_analyzer_recorded(data, path)
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


def part_name(first: str, part: int) -> str:
    """The file of part ``part`` (from 1) of a version's passages or vectors: ``first`` itself for part 1, then
    ``passages.000002.jsonl``, ``dense.000002.faiss``, ..."""
    stem, ext = first.split(".", 1)
    return first if part == 1 else f"{stem}.{part:06d}.{ext}"


def part_files(first: str, parts: int) -> list[str]:
    """The ``parts`` files of ``first`` (``PASSAGES_FILE`` or ``DENSE_FILE``), in order."""
    return [part_name(first, part) for part in range(1, parts + 1)]


def version_files(manifest: Manifest) -> list[str]:
    """Every file a version folder of ``manifest`` holds (each checksummed in ``files``)."""
    rows = [ROWS_FILE] if manifest.sizes is not None else []
    later = [name for first in (DENSE_FILE, PASSAGES_FILE) for name in part_files(first, manifest.parts)[1:]]
    return [*VERSION_FILES, *later, *rows, *segment_names(manifest.lexical, manifest.bm25)]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
