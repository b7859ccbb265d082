"""Versions of an index folder on disk: read and verify the current one, write the next one atomically.

Why versions: every change (build, add, delete) writes a whole new version folder, then replaces
``manifest.json`` with ``os.replace``, and only then removes the previous folder. A crash at any point leaves
``manifest.json`` naming a complete folder, so the previous index stays loadable; the next update removes
what an interrupted one left behind. Updates of one folder are serialised by a lock file (POSIX). Loading
checks every file's sha256, so a truncated or altered file is an error, not silently wrong results.
Nothing is pickled: faiss's own format, JSON, JSON lines and plain numeric ``.npy`` arrays (the BM25 segments, read
with ``allow_pickle=False``) only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError
from koembed.files import (
    checksums,
    fsync_path,
    remove_staged,
    require_empty_folder,
    staged_folder,
    verify_files,
    write_json,
    write_jsonl,
)
from koembed.index.bm25_store import Segment, segments_of, write_segments
from koembed.index.bm25_store import record as lexical_record
from koembed.index.faiss import set_faiss_search_params
from koembed.index.manifest import (
    DENSE_FILE,
    MANIFEST,
    PASSAGES_FILE,
    TOMBSTONES_FILE,
    VERSION_FILES,
    VERSION_RE,
    Manifest,
    now,
    read_manifest,
    version_files,
)
from koembed.version import __version__

LOCK = ".lock"  # the index's lock file (flock), present in a folder a build is about to fill


@dataclass
class IndexState:
    """One version of an index in memory; updates change it and commit it as the next version."""

    manifest: Manifest
    faiss_index: Any
    pids: list[int]
    doc_ids: list[str]
    texts: list[str]
    tokens: list[list[str]]
    tombstones: set[int]
    sparse: list[dict[int, float]] | None = None  # BGE-M3 lexical weights per passage, when the model has them
    segments: list[Segment] | None = None  # the stored BM25 segments (None: an index from before 0.4)
    lexical_next: int = 1  # the number of the next segment name


@contextmanager
def locked(index_dir: Path) -> Iterator[None]:
    """Serialise updates of one index folder across processes (POSIX advisory lock; none elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(index_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_new_folder(out_dir: Path) -> None:
    if (out_dir / MANIFEST).exists():
        raise IndexStoreError(f"{out_dir} already holds an index: update it with koembed index add/delete, "
                              "or choose a new folder")
    require_empty_folder(out_dir, IndexStoreError, ignore=(LOCK,))


def verify(index_dir: Path, manifest: Manifest) -> None:
    """Check every file of the current version against its sha256 in the manifest."""
    verify_files(index_dir / manifest.version_dir, manifest.files, MANIFEST, IndexStoreError,
                 remedy="the index is incomplete or cannot be trusted; rebuild it", expected=version_files(manifest))


def read_state(index_dir: Path) -> IndexState:
    """The current version, verified. Retries once if an update swapped versions while it was read."""
    for attempt in range(2):
        manifest = read_manifest(index_dir)
        try:
            return _read_version(index_dir, manifest)
        except IndexStoreError:
            if attempt or read_manifest(index_dir).version_dir == manifest.version_dir:
                raise
    raise AssertionError("unreachable")


def _read_version(index_dir: Path, manifest: Manifest) -> IndexState:
    import faiss

    verify(index_dir, manifest)
    folder = index_dir / manifest.version_dir
    pids, doc_ids, texts, tokens, sparse = [], [], [], [], []
    for pid, doc_id, text, toks, weights in _passage_rows(folder / PASSAGES_FILE):
        pids.append(pid)
        doc_ids.append(doc_id)
        texts.append(text)
        tokens.append(toks)
        if weights is not None:
            sparse.append(weights)
    tombstones = _tombstones(folder / TOMBSTONES_FILE)
    try:
        index = faiss.read_index(str(folder / DENSE_FILE))
    except RuntimeError as exc:
        raise IndexStoreError(f"{folder / DENSE_FILE}: not a readable FAISS index ({str(exc).splitlines()[0]}); "
                              "rebuild the index") from exc
    if index.d != manifest.dimension or index.ntotal != len(pids) + len(tombstones):
        raise IndexStoreError(f"{folder}: the vectors ({index.ntotal} of dimension {index.d}) do not match the "
                              f"manifest ({len(pids)} passages + {len(tombstones)} tombstones, dimension "
                              f"{manifest.dimension}); rebuild the index")
    set_faiss_search_params(index, manifest.kind, manifest.params)
    if 0 < len(sparse) < len(pids):
        raise IndexStoreError(f"{folder / PASSAGES_FILE}: {len(sparse)} of {len(pids)} passages hold lexical "
                              "weights; rebuild the index")
    return IndexState(manifest, index, pids, doc_ids, texts, tokens, tombstones, sparse if sparse else None,
                      segments_of(manifest.lexical, folder), (manifest.lexical or {}).get("next", 1))


def _passage_rows(path: Path) -> Iterator[tuple[int, str, str, list[str], dict[int, float] | None]]:
    """``(pid, id, text, tokens, sparse)`` per row of passages.jsonl (``sparse``: BGE-M3 lexical weights, None
    when the index has none); a malformed row is an error naming the row."""
    with open(path, "rb") as handle:
        for row, raw in enumerate(handle, start=1):
            try:
                record = json.loads(raw)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise IndexStoreError(f"{path}, row {row}: not a JSON object ({type(exc).__name__}); "
                                      "rebuild the index") from None
            ok = (isinstance(record, dict) and type(record.get("pid")) is int and isinstance(record.get("id"), str)
                  and isinstance(record.get("text"), str) and isinstance(record.get("tokens"), list)
                  and set(map(type, record["tokens"])) <= {str})  # (map: C-level, run per row on load)
            if not ok:
                raise IndexStoreError(f"{path}, row {row}: expected {{\"pid\": integer, \"id\": text, \"text\": text, "
                                      "\"tokens\": [text, ...]}; rebuild the index")
            sparse = record.get("sparse")
            if sparse is not None and not (isinstance(sparse, dict) and all(
                    key.isdigit() and isinstance(w, (int, float)) for key, w in sparse.items())):
                raise IndexStoreError(f"{path}, row {row}: \"sparse\" must map token ids to weights; rebuild the "
                                      "index")
            yield (record["pid"], record["id"], record["text"], record["tokens"],
                   {int(t): float(w) for t, w in sparse.items()} if sparse is not None else None)


def _tombstones(path: Path) -> set[int]:
    try:
        pids = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError, RecursionError):
        pids = None
    if not isinstance(pids, list) or not all(type(p) is int for p in pids):
        raise IndexStoreError(f"{path}: expected a JSON list of integer ids; rebuild the index")
    return set(pids)


def _remove_leftovers(index_dir: Path, current: str) -> None:
    """Version folders and staged files or folders an interrupted update left behind."""
    remove_staged(index_dir)
    for entry in index_dir.iterdir():
        if entry.is_dir() and entry.name != current and VERSION_RE.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def update(index_dir: Path, change: Callable[[IndexState], None]) -> Manifest:
    """Apply ``change`` to the current version under the folder's lock and commit the result."""
    if not (index_dir / MANIFEST).is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    with locked(index_dir):
        state = read_state(index_dir)
        _remove_leftovers(index_dir, state.manifest.version_dir)
        state.manifest = replace(state.manifest, counts=dict(state.manifest.counts))
        change(state)
        return commit(index_dir, state)


def commit(index_dir: Path, state: IndexState) -> Manifest:
    """Write ``state`` as the next version folder, point manifest.json at it, then drop the previous folder."""
    import faiss

    old = state.manifest.version_dir
    name = f"v{int(old[1:]) + 1 if old else 1:06d}"
    final = index_dir / name
    with staged_folder(final, durable=True) as stage:
        faiss.write_index(state.faiss_index, str(stage / DENSE_FILE))
        fsync_path(stage / DENSE_FILE)
        sparse = state.sparse if state.sparse is not None else [None] * len(state.pids)
        write_jsonl(stage / PASSAGES_FILE, ({"pid": p, "id": d, "text": t, "tokens": k} | (
            {"sparse": {str(i): w for i, w in x.items()}} if x is not None else {}) for p, d, t, k, x
            in zip(state.pids, state.doc_ids, state.texts, state.tokens, sparse)))
        write_json(stage / TOMBSTONES_FILE, sorted(state.tombstones))
        files = checksums(stage, VERSION_FILES) | write_segments(stage, state, state.manifest.files)
    try:
        manifest = replace(state.manifest, version_dir=name, files=files, updated=now(),
                           lexical=lexical_record(state),
                           counts={**state.manifest.counts, "passages": len(state.pids),
                                   "tombstones": len(state.tombstones)},
                           koembed_version=__version__, faiss_version=faiss.__version__)
        write_json(index_dir / MANIFEST, manifest.to_dict())  # the switch: atomic replace
        fsync_path(index_dir)
    except BaseException:
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
