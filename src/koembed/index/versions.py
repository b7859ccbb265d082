"""Versions of an index folder on disk: read and verify the current one, write the next one atomically.

Why versions: every change (build, add, delete) writes a whole new version folder, then replaces
``manifest.json`` with ``os.replace``, and only then removes the previous folder. A crash at any point leaves
``manifest.json`` naming a complete folder, so the previous index stays loadable; the next update removes
what an interrupted one left behind. Updates of one folder are serialised by a lock file (POSIX). Loading
for an update (and ``load_index(..., verify=True)``, ``koembed index info``) checks every file's sha256, so a
truncated or altered file is an error, not silently wrong results; a load for search checks sizes and the small
files' sha256 and reads passages on demand (:func:`open_version`, docs/RELIABILITY.md).
Nothing is pickled: faiss's own format, JSON, JSON lines and plain numeric ``.npy`` arrays (the BM25 segments, read
with ``allow_pickle=False``) only.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

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
from koembed.index.bm25_store import Segment, link_file, plan_change, plan_merge, segments_of, write_segments
from koembed.index.bm25_store import record as lexical_record
from koembed.index.faiss import set_faiss_search_params
from koembed.index.manifest import (
    DENSE_FILE,
    MANIFEST,
    MAX_PARTS,
    PASSAGES_FILE,
    TOMBSTONES_FILE,
    VERSION_FILES,
    VERSION_RE,
    Manifest,
    now,
    part_files,
    part_name,
    read_manifest,
    version_files,
)
from koembed.index.rows import (
    ROWS_FILE,
    StoredColumn,
    StoredRows,
    live_rows,
    passage_rows,
    row_table,
    same_pids,
    sizes_match,
    write_rows,
    write_table,
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
    verify(index_dir, manifest)
    folder = index_dir / manifest.version_dir
    pids, doc_ids, texts, tokens, sparse = [], [], [], [], []
    paths = [folder / name for name in part_files(PASSAGES_FILE, manifest.parts)]
    rows = (live_rows(paths, row_table(folder, manifest.counts.get("passages", -1))[:, 1])
            if manifest.sizes is not None else passage_rows(folder / PASSAGES_FILE))
    for pid, doc_id, text, toks, weights in rows:
        pids.append(pid)
        doc_ids.append(doc_id)
        texts.append(text)
        tokens.append(toks)
        if weights is not None:
            sparse.append(weights)
    if manifest.sizes is not None:  # a version from 0.5 on: its row table must list these rows
        same_pids(folder / PASSAGES_FILE, pids, row_table(folder, len(pids))[:, 0])
    tombstones = _tombstones(folder / TOMBSTONES_FILE)
    handles = [open(folder / name, "rb") for name in part_files(DENSE_FILE, manifest.parts)]  # noqa: SIM115 - closed below
    try:
        index = read_faiss(handles, manifest, folder, len(pids), len(tombstones), merge=True)
    finally:
        for handle in handles:
            handle.close()
    if 0 < len(sparse) < len(pids):
        raise IndexStoreError(f"{folder / PASSAGES_FILE}: {len(sparse)} of {len(pids)} passages hold lexical "
                              "weights; rebuild the index")
    return IndexState(manifest, index, pids, doc_ids, texts, tokens, tombstones, sparse if sparse else None,
                      segments_of(manifest.lexical, folder), (manifest.lexical or {}).get("next", 1))


def read_faiss(handles: Sequence[BinaryIO], manifest: Manifest, folder: Path, live: int, tombstones: int,
               merge: bool = False) -> Any:
    """The FAISS index of a version's open dense files (one per part), checked against the manifest, its search
    settings restored. Several parts are searched together as ``faiss.IndexShards`` (results merged by score), or
    with ``merge`` added into the first part's index (what an update changes and writes back as one part)."""
    import faiss
    import numpy as np

    shards = []
    for handle, name in zip(handles, part_files(DENSE_FILE, manifest.parts)):
        handle.seek(0)
        try:
            shard: Any = faiss.deserialize_index(np.fromfile(handle, dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexStoreError(f"{folder / name}: not a readable FAISS index ({str(exc).splitlines()[0]}); "
                                  "rebuild the index") from exc
        if shard.d != manifest.dimension:
            raise IndexStoreError(f"{folder / name}: vectors of dimension {shard.d}, not the manifest's "
                                  f"{manifest.dimension}; rebuild the index")
        set_faiss_search_params(shard, manifest.kind, manifest.params)
        shards.append(shard)
    total = sum(shard.ntotal for shard in shards)
    if total != live + tombstones:
        raise IndexStoreError(f"{folder}: the vectors ({total} of dimension {manifest.dimension}) do not match "
                              f"the manifest ({live} passages + {tombstones} tombstones); rebuild the index")
    index = shards[0]
    if len(shards) == 1:
        return index
    if merge:
        for shard in shards[1:]:
            index.add_with_ids(shard.index.reconstruct_n(0, shard.ntotal),
                               faiss.vector_to_array(shard.id_map).astype(np.int64))
        return index
    together: Any = cast(Any, faiss).IndexShards(manifest.dimension, False, False)  # unthreaded; shards keep ids
    for shard in shards:
        together.add_shard(shard)  # (faiss's Python wrapper keeps a reference to each shard)
    return together


@dataclass
class StoredVersion:
    """A version opened for search without reading its passages or vectors (:func:`open_version`)."""

    manifest: Manifest
    folder: Path
    rows: StoredRows
    tombstones: set[int]
    dense: Sequence[BinaryIO]  # dense.faiss (and later parts), opened now, read by :func:`read_faiss` at the first
    # dense search


def open_version(index_dir: Path, verify_all: bool = False) -> IndexState | StoredVersion:
    """The current version for search. An index from 0.5 on is opened in constant time: the manifest, every
    file's size, the sha256 of the small files (tombstones, row table) and the row table's consistency are
    checked, and passages are read as searches need them (:class:`koembed.index.rows.StoredRows`). An older
    index, or ``verify_all``, is read in full with every sha256 checked (:func:`read_state`)."""
    for attempt in range(2):
        manifest = read_manifest(index_dir)
        if verify_all or manifest.sizes is None:
            return read_state(index_dir)
        try:
            folder = index_dir / manifest.version_dir
            sizes_match(folder, manifest.sizes)
            small = {n: manifest.files[n] for n in (TOMBSTONES_FILE, ROWS_FILE)}
            verify_files(folder, small, MANIFEST, IndexStoreError, remedy="the index cannot be trusted; rebuild it")
            tombstones = _tombstones(folder / TOMBSTONES_FILE)
            rows = StoredRows(folder, manifest.counts.get("passages", -1),
                              [folder / name for name in part_files(PASSAGES_FILE, manifest.parts)])
            dense = [open(folder / name, "rb") for name in part_files(DENSE_FILE, manifest.parts)]  # noqa: SIM115 - owned by the version
            return StoredVersion(manifest, folder, rows, tombstones, dense)
        except IndexStoreError:
            if attempt or read_manifest(index_dir).version_dir == manifest.version_dir:
                raise
    raise AssertionError("unreachable")


def some_ids(ids: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` ids quoted, and how many more: what an error naming ids shows."""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


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
    name = _next_version(old)
    final = index_dir / name
    with staged_folder(final, durable=True) as stage:
        faiss.write_index(state.faiss_index, str(stage / DENSE_FILE))
        fsync_path(stage / DENSE_FILE)
        sparse = state.sparse if state.sparse is not None else [None] * len(state.pids)
        offsets = write_jsonl(stage / PASSAGES_FILE, ({"pid": p, "id": d, "text": t, "tokens": k} | (
            {"sparse": {str(i): w for i, w in x.items()}} if x is not None else {}) for p, d, t, k, x
            in zip(state.pids, state.doc_ids, state.texts, state.tokens, sparse)))
        write_rows(stage, state.pids, state.doc_ids, offsets)
        write_json(stage / TOMBSTONES_FILE, sorted(state.tombstones))
        files = checksums(stage, (*VERSION_FILES, ROWS_FILE)) | write_segments(stage, state, state.manifest.files)
        sizes = {name: (stage / name).stat().st_size for name in files}
    return _switch(index_dir, state, name, files, sizes, parts=1)


def _next_version(old: str) -> str:
    return f"v{int(old[1:]) + 1 if old else 1:06d}"


def _switch(index_dir: Path, state: IndexState, name: str, files: dict[str, str], sizes: dict[str, int],
            parts: int) -> Manifest:
    """Point manifest.json at the complete version folder ``name`` (the atomic switch), then drop the previous one."""
    import faiss

    old = state.manifest.version_dir
    final = index_dir / name
    try:
        manifest = replace(state.manifest, version_dir=name, files=files, sizes=sizes, updated=now(), parts=parts,
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


@dataclass
class Addition:
    """What :func:`append` adds: new passages (pids from the manifest's ``next_id`` up), their Kiwi tokens and
    their normalised float32 vectors (row i = passage i)."""

    doc_ids: list[str]
    texts: list[str]
    tokens: list[list[str]]
    vectors: Any


def can_append(manifest: Manifest) -> bool:
    """Whether an add can be written as a new part (:func:`append`): a version with a row table and BM25
    segments, a flat or HNSW index (an IVF shard would need the trained quantizer), and parts to spare."""
    return (manifest.sizes is not None and manifest.lexical is not None and manifest.kind in ("flat", "hnsw")
            and manifest.parts < MAX_PARTS)


def _linkable(index_dir: Path) -> tuple[StoredVersion, Manifest] | None:
    """Under the folder's lock: the current version opened as a search opens it, its vector files closed, an
    interrupted change's folder removed, and a copy of its manifest to change; None for an index read in full
    (:func:`open_version`), which a change rewrites instead of linking."""
    current = open_version(index_dir)
    if not isinstance(current, StoredVersion):
        return None
    for handle in current.dense:
        handle.close()
    manifest = replace(current.manifest, counts=dict(current.manifest.counts))
    _remove_leftovers(index_dir, manifest.version_dir)
    return current, manifest


def drop(index_dir: Path, doc_ids: Sequence[str]) -> Manifest | None:
    """A delete written as the next version without rewriting the stored passages and vectors, or None when the
    version should be rewritten instead (:func:`can_append`'s conditions, or tombstones would outnumber half the
    vectors: then a rewrite drops them and the deleted rows' bytes).

    The deleted passages leave the row table (their lines stay in the linked passage files, skipped by every
    reader) and their vectors become tombstones, skipped by dense search; a BM25 segment is rewritten only when
    more than half of it is deleted (:func:`koembed.index.bm25_store.plan_change`). An unknown id is a
    :class:`DocumentIdError` naming it, and nothing is deleted.
    """
    import numpy as np

    from koembed.errors import DocumentIdError

    with locked(index_dir):
        opened = _linkable(index_dir)
        if opened is None:
            return None
        current, manifest = opened
        rows = current.rows
        found = {d: rows.find(d) for d in dict.fromkeys(doc_ids)}
        unknown = [d for d, row in found.items() if row is None]
        if unknown:
            raise DocumentIdError(f"{index_dir}: no passage with id {some_ids(unknown)}; nothing was deleted")
        dead = np.array(sorted(r for r in found.values() if r is not None), dtype=np.int64)
        tombstones = current.tombstones | set(rows.pids[dead].tolist())
        if not can_append(replace(manifest, parts=1)) or 2 * len(tombstones) > len(rows) + len(current.tombstones):
            return None
        keep: np.ndarray = np.ones(len(rows), dtype=bool)
        keep[dead] = False
        kept = np.flatnonzero(keep)
        renumber = np.cumsum(keep) - 1
        order = renumber[rows.order[keep[rows.order]]]
        ids, texts, tokens = (cast(Any, StoredColumn(rows, field, kept=kept)) for field in (1, 2, 3))
        state = IndexState(manifest, None, rows.pids[kept].tolist(), ids, texts, tokens, tombstones, None,
                           segments_of(manifest.lexical, current.folder), (manifest.lexical or {}).get("next", 1))
        state.manifest.counts["deleted"] += len(dead)
        plan_change(state)

        def write(stage: Path) -> list[str]:
            write_table(stage, rows.pids[kept], rows.offsets[kept], order)
            write_json(stage / TOMBSTONES_FILE, sorted(state.tombstones))
            return [ROWS_FILE, TOMBSTONES_FILE]

        return _linked_version(index_dir, current, state, manifest.parts, write)


def merge_lexical(index_dir: Path) -> Manifest | None:
    """Every BM25 segment of the current version merged into one, as the next version (every other file
    linked), or None when there is nothing to merge (one segment, or a version that cannot be linked, as
    :func:`can_append` says). Queries pay per segment: an index built before builds merged their chunks, or
    grown by many adds, searches faster merged. Rankings are unchanged."""
    with locked(index_dir):
        opened = _linkable(index_dir)
        if opened is None or not can_append(replace(opened[1], parts=1)):
            return None
        current, manifest = opened
        rows = current.rows
        ids, texts, tokens = (cast(Any, StoredColumn(rows, field)) for field in (1, 2, 3))
        state = IndexState(manifest, None, rows.pids.tolist(), ids, texts, tokens, current.tombstones, None,
                           segments_of(manifest.lexical, current.folder), (manifest.lexical or {}).get("next", 1))
        if not plan_merge(state):
            return None

        def write(stage: Path) -> list[str]:
            for name in (ROWS_FILE, TOMBSTONES_FILE):
                link_file(current.folder / name, stage / name)
            return [ROWS_FILE, TOMBSTONES_FILE]

        return _linked_version(index_dir, current, state, manifest.parts, write)


def append(index_dir: Path, prepare: Callable[[StoredVersion], Addition]) -> Manifest:
    """An add written as the next version without reading or rewriting the stored passages and vectors.

    Under the folder's lock the current version is opened as a search opens it (sizes, the small files' sha256,
    the row table: :func:`open_version`), ``prepare`` computes the :class:`Addition` from it, and the next version
    folder gets hard links to every passage and vector file of the current one, the new passages as one more
    passage file and their vectors as one more FAISS shard, a new row table (the new rows appended, their ids
    merged into the doc-id order by binary search) and one new BM25 segment. The files linked keep their recorded
    sha256 (never changed in place); ``koembed index info`` and the next full rewrite check them all. Crash
    safety is :func:`commit`'s: a staged folder, then the manifest switch.
    """
    import faiss
    import numpy as np

    from koembed.index.faiss import new_faiss_index

    with locked(index_dir):
        opened = _linkable(index_dir)
        if opened is None or not can_append(opened[1]):
            raise IndexStoreError(f"{index_dir}: this version cannot take an add as a new part")
        current, manifest = opened
        added = prepare(current)
        rows, n = current.rows, len(added.doc_ids)
        new_pids = list(range(manifest.next_id, manifest.next_id + n))
        ids, texts, tokens = (cast(Any, StoredColumn(rows, field, new)) for field, new in  # per row, never all
                              ((1, added.doc_ids), (2, added.texts), (3, added.tokens)))
        state = IndexState(manifest, None, [*rows.pids.tolist(), *new_pids], ids, texts, tokens, current.tombstones,
                           None, segments_of(manifest.lexical, current.folder), (manifest.lexical or {}).get("next", 1))
        state.manifest.next_id += n
        plan_change(state, new_pids)
        part = manifest.parts + 1

        def write(stage: Path) -> list[str]:
            offsets = write_jsonl(stage / part_name(PASSAGES_FILE, part), (
                {"pid": p, "id": d, "text": t, "tokens": k}
                for p, d, t, k in zip(new_pids, added.doc_ids, added.texts, added.tokens)))
            by_id = sorted(range(n), key=added.doc_ids.__getitem__)
            order: np.ndarray = np.insert(rows.order, [rows.sorted_position(added.doc_ids[j]) for j in by_id],
                                          [len(rows) + j for j in by_id])
            write_table(stage, np.asarray(state.pids, dtype=np.int64),
                        np.concatenate([rows.offsets, rows.size + np.asarray(offsets[:n], dtype=np.int64)]), order)
            write_json(stage / TOMBSTONES_FILE, sorted(state.tombstones))
            shard = new_faiss_index(manifest.kind, manifest.dimension, manifest.params)
            shard.add_with_ids(added.vectors, np.asarray(new_pids, dtype=np.int64))
            faiss.write_index(shard, str(stage / part_name(DENSE_FILE, part)))
            fsync_path(stage / part_name(DENSE_FILE, part))
            return [part_name(PASSAGES_FILE, part), part_name(DENSE_FILE, part), ROWS_FILE, TOMBSTONES_FILE]

        return _linked_version(index_dir, current, state, part, write)


def _linked_version(index_dir: Path, current: StoredVersion, state: IndexState, parts: int,
                    write: Callable[[Path], list[str]]) -> Manifest:
    """The next version as :func:`append` and :func:`drop` write it: every passage file and FAISS shard of
    ``current`` hard-linked (their sha256 carried over), the files ``write`` writes into the staged folder (it returns
    their names, hashed here), the BM25 segments ``state`` plans; then the switch."""
    old = current.manifest
    linked = [*part_files(PASSAGES_FILE, old.parts), *part_files(DENSE_FILE, old.parts)]
    name = _next_version(old.version_dir)
    with staged_folder(index_dir / name, durable=True) as stage:
        for file in linked:
            link_file(current.folder / file, stage / file)
        written = write(stage)
        files = ({f: old.files[f] for f in linked} | checksums(stage, written)
                 | write_segments(stage, state, old.files))
        sizes = {f: (stage / f).stat().st_size for f in files}
    return _switch(index_dir, state, name, files, sizes, parts=parts)


def _current_version(index_dir: Path) -> str | None:
    try:
        return json.loads((index_dir / MANIFEST).read_text(encoding="utf-8")).get("version_dir")
    except (OSError, ValueError, AttributeError):
        return None
