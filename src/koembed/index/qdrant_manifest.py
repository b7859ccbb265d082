"""The Qdrant store's ``manifest.json``: what it records, how it is read (strictly), and what binds it to its collection.

Every field is checked when the manifest is read, so a damaged or hand-edited manifest is an
:class:`IndexStoreError` naming the field (the CLI exits 2), never a traceback and never an action on the
collection: unknown keys, a missing place (``local_path`` and ``url`` both null), non-positive or non-finite
BM25 settings (``k1``, ``b``, weights, every field's ``avgdl``), negative counts, and a ``pending`` change that
is not exactly one of the two shapes koembed writes (``{"op": "add", "txn": <32 hex>, "passages": n}`` or
``{"op": "delete", "ids": [...]}``).

Binding (:func:`binding`): each build gets a random ``build_id``; the collection keeps it, with a fingerprint
of the model, as its ``metadata`` (a server's collection metadata; :mod:`koembed.index.qdrant_embedded` keeps it
beside the embedded shard). Loading compares them (:func:`koembed.index.qdrant.check_collection`), so a
manifest pointed at another index's collection (a ``local_path`` edited to another folder, a collection
deleted on the server and rebuilt under the same name) is refused instead of searched.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError
from koembed.files import read_manifest as read_json_manifest
from koembed.files import write_json
from koembed.index.analysis import bm25_analysis
from koembed.index.manifest import MANIFEST, VERSION_REMEDY, IndexManifest, check_analyzer_recorded, now
from koembed.index.qdrant_sparse import TERM_ID_SCHEME, Field, fields_of
from koembed.lexical import LexicalConfig, UserDict
from koembed.version import __version__

# docs/INDEX_FORMAT.md, "Format versions". 3: bm25.analyzer always recorded; 2: the embedded Rust engine, bound by
# build id (written before versions were kept: the analyzer may be absent, then Kiwi); 1: qdrant-client's local
# mode, unreadable (rebuild). An update keeps the version the index has; a reader takes OLDER_FORMATS too.
FORMAT_VERSION = 3
OLDER_FORMATS = (2,)
STORE = "qdrant"
TXN = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: a build's id and every add's transaction
BUILD_KEY, MODEL_KEY = "koembed_build", "koembed_model"


@dataclass(kw_only=True)
class QdrantManifest(IndexManifest):
    """``manifest.json`` of a Qdrant index. ``local_path`` (the embedded engine's storage) is relative to the
    index folder when inside it. ``build_id``: this build's random id, also in the collection's metadata and the
    ``txn`` of the points the build wrote. ``bm25``: tokenizer, k1, b, average length, term-id scheme.
    ``pending``: an add (``txn``) or a delete (``ids``) not yet committed, else None. ``m3``: the BGE-M3 vectors
    the collection holds (:func:`koembed.index.qdrant_m3.m3_record`), None for a model without bge-m3's heads."""

    collection: str
    local_path: str | None
    url: str | None
    build_id: str
    layout: dict[str, Any]
    pending: dict[str, Any] | None = None
    store: str = STORE
    format_version: int = FORMAT_VERSION
    qdrant_client_version: str = ""
    engine: str = ""
    m3: dict[str, Any] | None = None

    @property
    def fields(self) -> list[Field]:
        """The BM25 fields in the ``bm25`` sparse vector, with their weights and average lengths."""
        return fields_of(LexicalConfig.from_dict(self.bm25), self.bm25["avgdl"])

    @property
    def where(self) -> str:
        if self.url:
            return f"collection {self.collection!r} at {self.url}"
        return f"collection {self.collection!r} in {self.local_path}"


def model_fingerprint(model: dict[str, Any]) -> str:
    """A short digest of the manifest's model record (name, revision, backend, prompts, probe embedding)."""
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def binding(manifest: QdrantManifest) -> dict[str, str]:
    """What the collection keeps of the index it belongs to (its ``metadata``)."""
    return {BUILD_KEY: manifest.build_id, MODEL_KEY: model_fingerprint(manifest.model)}


def check_binding(metadata: dict[str, Any] | None, manifest: QdrantManifest, index_dir: Path) -> None:
    """The collection's metadata names this manifest's build (else it is another index's collection)."""
    metadata = metadata or {}
    if metadata.get(BUILD_KEY) == manifest.build_id and metadata.get(MODEL_KEY) == model_fingerprint(manifest.model):
        return
    if BUILD_KEY not in metadata:
        why = "carries no koembed build id (not built by this koembed for this index)"
    elif metadata.get(MODEL_KEY) != model_fingerprint(manifest.model):
        why = (f"was built from another model (fingerprint {metadata.get(MODEL_KEY)!r}, this index's "
               f"{model_fingerprint(manifest.model)!r} for {manifest.model.get('name')!r})")
    else:
        why = f"belongs to another build ({metadata.get(BUILD_KEY)!r}, this index's {manifest.build_id!r})"
    raise IndexStoreError(f"{index_dir}: {manifest.where} {why}: it is not this index's collection (rebuilt under "
                          "the same name, or the manifest points at another index's storage); rebuild the index")


def bm25_record(config: LexicalConfig, avgdl: dict[str, float], user_dict: UserDict | None = None) -> dict[str, Any]:
    """The manifest's record of the sparse half: analysis, fields with weights, k1, b, each field's average
    length, the term-id scheme. Only raw weighted sums can be scored by the engine (``normalization`` none)."""
    if config.normalization != "none":
        raise IndexStoreError(f"the Qdrant store sums the fields' raw BM25 scores; normalization "
                              f"{config.normalization!r} needs every passage's scores per query: use none")
    return {**bm25_analysis(config, user_dict), "avgdl": avgdl, "term_ids": TERM_ID_SCHEME,
            "idf": "qdrant Modifier.IDF (Lucene's)"}


def read_qdrant_manifest(index_dir: Path) -> QdrantManifest:
    """The manifest, every field checked (module docstring)."""
    path = index_dir / MANIFEST
    data = read_json_manifest(path, IndexStoreError, format=None, version=FORMAT_VERSION, remedy="rebuild the index",
                              older=OLDER_FORMATS, version_remedy=VERSION_REMEDY)
    if isinstance(data.get("bm25"), dict):
        check_analyzer_recorded(data, path, since=3)
    names = set(QdrantManifest.__dataclass_fields__)
    missing = sorted(n for n in names if n not in data and n not in ("m3", "engine"))
    if missing or data.get("store") != STORE:
        raise IndexStoreError(f"{path}: not a koembed Qdrant manifest (lacks {', '.join(missing) or 'store'})")
    unknown = sorted(set(data) - names)
    if unknown:
        raise IndexStoreError(f"{path}: unknown keys {', '.join(map(repr, unknown))}; rebuild the index")
    manifest = QdrantManifest(**{n: data[n] for n in names if n in data})
    _validate(manifest, path)
    return manifest


def write_qdrant_manifest(index_dir: Path, manifest: QdrantManifest) -> None:
    from importlib.metadata import version

    manifest.updated = now()
    manifest.koembed_version = __version__
    manifest.qdrant_client_version = version("qdrant-client")
    manifest.engine = (f"qdrant server (qdrant-client {manifest.qdrant_client_version})" if manifest.url
                       else f"qdrant-edge-py {version('qdrant-edge-py')} (embedded)")
    write_json(index_dir / MANIFEST, asdict(manifest))


def _validate(m: QdrantManifest, path: Path) -> None:
    def bad(field: str, why: str) -> IndexStoreError:
        return IndexStoreError(f"{path}: {field} {why}; rebuild the index")

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    for name in ("collection", "normalized_by", "created", "updated"):
        if not isinstance(getattr(m, name), str) or not getattr(m, name):
            raise bad(name, "must be a non-empty string")
    for name in ("local_path", "url"):
        if getattr(m, name) is not None and (not isinstance(getattr(m, name), str) or not getattr(m, name)):
            raise bad(name, "must be a non-empty string or null")
    if (m.local_path is None) == (m.url is None):
        raise bad("local_path / url", "must name one place for the collection (exactly one of them non-null)")
    if not isinstance(m.build_id, str) or not TXN.fullmatch(m.build_id):
        raise bad("build_id", f"{m.build_id!r} is not a koembed build id (32 hex digits)")
    if not isinstance(m.model, dict) or not isinstance(m.model.get("name"), str) or not isinstance(
            m.model.get("probe"), list):
        raise bad("model", "must be an object with the model's name and probe")
    if not count(m.dimension) or m.dimension < 1:
        raise bad("dimension", f"{m.dimension!r} is not a positive integer")
    if not isinstance(m.layout, dict):
        raise bad("layout", "must be an object")
    if m.similarity != "cosine":
        raise bad("similarity", f"{m.similarity!r} is not cosine")
    if not isinstance(m.counts, dict) or set(m.counts) != {"passages", "deleted"} or not all(
            count(v) for v in m.counts.values()):
        raise bad("counts", f"{m.counts!r} must be {{'passages': n, 'deleted': n}} with counts >= 0")
    if not isinstance(m.bm25, dict):
        raise bad("bm25", "must be an object")
    try:
        config = LexicalConfig.from_dict(m.bm25)
    except (ValueError, KeyError, TypeError) as exc:
        raise bad("bm25", f"is not a lexical config ({exc})") from None
    if config.normalization != "none":
        raise bad("bm25.normalization", f"{config.normalization!r} is not none")
    if not number(config.k1) or config.k1 < 0 or not number(config.b) or not 0 <= config.b <= 1:
        raise bad("bm25", f"k1 {config.k1!r} must be >= 0 and b {config.b!r} within [0, 1]")
    if not all(number(w) for w in config.weights.values()):
        raise bad("bm25.weights", "must be finite numbers")
    avgdl = m.bm25.get("avgdl")
    if not isinstance(avgdl, dict) or set(avgdl) != set(config.fields) or not all(
            number(v) and v > 0 for v in avgdl.values()):
        raise bad("bm25.avgdl", f"{avgdl!r} must give each field ({', '.join(config.fields)}) a positive length")
    if m.m3 is not None and (not isinstance(m.m3, dict) or not count(m.m3.get("colbert_dimension"))):
        raise bad("m3", "must be null or the record of the BGE-M3 vectors")
    _validate_pending(m.pending, m.build_id, bad)


def _validate_pending(pending: Any, build_id: str, bad: Any) -> None:
    """``pending`` is None or exactly an add or a delete as koembed writes them; an add's ``txn`` is never the
    build's (recovery deletes the points of a pending add's ``txn``)."""
    if pending is None:
        return
    if not isinstance(pending, dict):
        raise bad("pending", f"{pending!r} must be null or an object")
    if pending.get("op") == "add":
        if set(pending) != {"op", "txn", "passages"}:
            raise bad("pending", f"{pending!r}: an add records exactly op, txn and passages")
        if not isinstance(pending["txn"], str) or not TXN.fullmatch(pending["txn"]) or pending["txn"] == build_id:
            raise bad("pending.txn", f"{pending['txn']!r} is not the id of an add (32 hex digits, not the build's)")
        if not isinstance(pending["passages"], int) or isinstance(pending["passages"], bool) or pending["passages"] < 1:
            raise bad("pending.passages", f"{pending['passages']!r} is not a positive count")
    elif pending.get("op") == "delete":
        ids = pending.get("ids")
        if set(pending) != {"op", "ids"} or not isinstance(ids, list) or not ids or not all(
                isinstance(d, str) and d for d in ids):
            raise bad("pending", f"a delete records exactly op and ids (a non-empty list of passage ids), not "
                                 f"{pending!r}")
    else:
        raise bad("pending.op", f"{pending.get('op')!r} is neither add nor delete")
