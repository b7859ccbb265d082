"""A version's passages read on demand: what lets :func:`koembed.index.load_index` start in constant time.

``passages.jsonl`` holds one JSON row per live passage (pid, id, text, Kiwi tokens). Since 0.5 a version also
holds ``passages.rows.npy``, int64 of shape (passages, 3): per row its pid, the byte offset where its line starts,
and (third column, a permutation) the rows in ascending doc-id order. With it, a search reads only the lines of
the passages it returns, finds a doc id by binary search over that order, and takes the doc-id tie-break ranks
without sorting every id. Each line read is parsed and checked as a full read checks it (a malformed line is an
error naming the file and row), and its pid must be the table's. Loading checks file sizes only (sha256 is checked
by ``load_index(..., verify=True)``, ``koembed index info`` and every update; docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from koembed.errors import IndexStoreError
from koembed.files import atomic_open

if TYPE_CHECKING:
    import numpy as np

ROWS_FILE = "passages.rows.npy"
ROW_READ = 1 << 16  # bytes read for one row before reading on to the next live row
Row = tuple[int, str, str, list[str], "dict[int, float] | None"]


def parse_row(path: Path, row: int, raw: bytes) -> Row:
    """``(pid, id, text, tokens, sparse)`` of one line of passages.jsonl (``row`` counts from 1), checked."""
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise IndexStoreError(f"{path}, row {row}: not a JSON object ({type(exc).__name__}); "
                              "rebuild the index") from None
    ok = (isinstance(record, dict) and type(record.get("pid")) is int and isinstance(record.get("id"), str)
          and isinstance(record.get("text"), str) and isinstance(record.get("tokens"), list)
          and set(map(type, record["tokens"])) <= {str})  # (map: C-level, run per row on a full read)
    if not ok:
        raise IndexStoreError(f"{path}, row {row}: expected {{\"pid\": integer, \"id\": text, \"text\": text, "
                              "\"tokens\": [text, ...]}; rebuild the index")
    sparse = record.get("sparse")
    if sparse is not None and not (isinstance(sparse, dict) and all(
            key.isdigit() and isinstance(w, (int, float)) for key, w in sparse.items())):
        raise IndexStoreError(f"{path}, row {row}: \"sparse\" must map token ids to weights; rebuild the index")
    return (record["pid"], record["id"], record["text"], record["tokens"],
            {int(t): float(w) for t, w in sparse.items()} if sparse is not None else None)


def passage_rows(path: Path) -> Iterator[Row]:
    """Every row of passages.jsonl in order, each checked (:func:`parse_row`)."""
    with open(path, "rb") as handle:
        for row, raw in enumerate(handle, start=1):
            yield parse_row(path, row, raw)


def live_rows(paths: Sequence[Path], offsets: np.ndarray) -> Iterator[Row]:
    """The rows starting at ``offsets`` (ascending, counted across ``paths`` as one file), in order, each checked
    (:func:`parse_row`); the lines between them are deleted passages, skipped."""
    wanted = iter(offsets.tolist())
    target, base, row = next(wanted, None), 0, 0
    for path in paths:
        position = base
        with open(path, "rb") as handle:
            for raw in handle:
                if position == target:
                    row += 1
                    yield parse_row(path, row, raw)
                    target = next(wanted, None)
                position += len(raw)
        base = position
    if target is not None:
        raise IndexStoreError(f"{paths[0]}: {ROWS_FILE} lists a row at byte {target}, where no row starts; "
                              "rebuild the index")


def write_rows(folder: Path, pids: Sequence[int], doc_ids: Sequence[str], offsets: Sequence[int]) -> None:
    """Write ``passages.rows.npy`` for passages.jsonl rows starting at byte ``offsets``."""
    import numpy as np

    order = np.argsort(np.array(doc_ids, dtype=object), kind="stable") if len(doc_ids) else []
    write_table(folder, np.asarray(pids, dtype=np.int64), np.asarray(offsets[: len(pids)], dtype=np.int64), order)


def write_table(folder: Path, pids: np.ndarray, offsets: np.ndarray, order: Any) -> None:
    """Write ``passages.rows.npy`` from its three columns."""
    import numpy as np

    table: np.ndarray = np.empty((len(pids), 3), dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2] = pids, offsets, order
    with atomic_open(folder / ROWS_FILE, "wb") as handle:
        np.save(handle, table, allow_pickle=False)


class StoredColumn(Sequence[Any]):
    """One column of a version's rows (``field``: 1 id, 2 text, 3 tokens) read per row as needed: the stored rows
    ``kept`` (row numbers; all when None), then ``added`` values. What an add's or a delete's BM25 segment planning
    reads instead of every row (:mod:`koembed.index.versions`)."""

    def __init__(self, rows: StoredRows, field: int, added: Sequence[Any] = (), kept: np.ndarray | None = None):
        self.rows, self.field, self.added, self.kept = rows, field, added, kept
        self.stored = len(rows) if kept is None else len(kept)

    def __len__(self) -> int:
        return self.stored + len(self.added)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < self.stored:
            return self.rows.row(i if self.kept is None else int(self.kept[i]))[self.field]
        return self.added[i - self.stored]


def row_table(folder: Path, count: int) -> np.ndarray:
    """``passages.rows.npy`` of ``folder``, memory-mapped, checked to be int64 of shape (``count``, 3)."""
    import numpy as np

    try:
        table = np.load(folder / ROWS_FILE, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise IndexStoreError(f"{folder / ROWS_FILE}: not a readable array ({exc}); rebuild the index") from None
    if table.dtype != np.int64 or table.shape != (count, 3):
        raise IndexStoreError(f"{folder / ROWS_FILE}: expected int64 of shape ({count}, 3), not {table.dtype} "
                              f"{table.shape}; rebuild the index")
    return table


class StoredRows(Sequence[str]):
    """The doc ids of a version's rows (``rows[i]``: row i's id), each line read when first needed.

    The file is opened at load, so a search keeps reading this version after an update has replaced it (POSIX).
    """

    def __init__(self, folder: Path, count: int, paths: Sequence[Path] | None = None):
        import numpy as np

        # A version's rows may lie in several files (parts: koembed.index.manifest.part_name); offsets count from
        # the start of the first, as if the files were one.
        self.paths = list(paths) if paths is not None else [folder / "passages.jsonl"]
        self.path = self.paths[0]
        table = row_table(folder, count)
        self.pids = np.ascontiguousarray(table[:, 0])
        self._order = np.ascontiguousarray(table[:, 2])
        self._starts: np.ndarray = np.cumsum([0] + [p.stat().st_size for p in self.paths])
        # Rows ascend; deleted rows may lie between them (a delete rewrites only this table: koembed.index.versions)
        self._bounds: np.ndarray = np.append(table[:, 1], self._starts[-1])
        if count and (self._bounds[0] < 0 or (np.diff(self._bounds) <= 0).any()
                      or self._order.min() < 0 or self._order.max() >= count  # a permutation: each row once
                      or not (np.bincount(self._order, minlength=count) == 1).all()):
            raise IndexStoreError(f"{folder / ROWS_FILE}: row offsets or order out of range; rebuild the index")
        self._fds = [os.open(path, os.O_RDONLY) for path in self.paths]
        self._ids: dict[int, str] = {}

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", ()):
            os.close(fd)

    @property
    def size(self) -> int:
        """Bytes of all the version's passage files together (where a row appended next starts)."""
        return int(self._starts[-1])

    def __len__(self) -> int:
        return len(self.pids)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        found = self._ids.get(i)
        if found is None:
            found = self._ids[i] = self.row(i)[1]
        return found

    def row(self, i: int) -> Row:
        """Row ``i`` (from 0) read and checked."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = int(self._bounds[i])
        part = int(self._starts.searchsorted(start, side="right")) - 1
        path, base = self.paths[part], int(self._starts[part])
        end = min(int(self._bounds[i + 1]), int(self._starts[part + 1]))  # deleted rows may follow it in its file
        raw = os.pread(self._fds[part], min(end - start, ROW_READ), start - base)
        if b"\n" not in raw and end - start > ROW_READ:
            raw = os.pread(self._fds[part], end - start, start - base)
        if b"\n" not in raw:
            raise IndexStoreError(f"{path}, row {i + 1}: not where {ROWS_FILE} says; rebuild the index")
        raw = raw[: raw.index(b"\n") + 1]
        parsed = parse_row(path, i + 1, raw)
        if parsed[0] != int(self.pids[i]):
            raise IndexStoreError(f"{path}, row {i + 1}: pid {parsed[0]}, but {ROWS_FILE} says "
                                  f"{int(self.pids[i])}; rebuild the index")
        return parsed

    def find(self, doc_id: str) -> int | None:
        """The row holding ``doc_id`` (binary search over the stored doc-id order), None if none does."""
        low = self.sorted_position(doc_id)
        if low < len(self) and self[int(self._order[low])] == doc_id:
            return int(self._order[low])
        return None

    def ranks(self) -> np.ndarray:
        """Each row's position in ascending doc-id order (what :func:`koembed.ranking.id_ranks` computes)."""
        import numpy as np

        ranks: np.ndarray = np.empty(len(self), dtype=np.int64)
        ranks[self._order] = np.arange(len(self))
        return ranks

    def read_all(self) -> list[Row]:
        """Every row, read once in order (for what needs them all: listing ids, an old index's BM25)."""
        rows = list(live_rows(self.paths, self.offsets))
        same_pids(self.path, [r[0] for r in rows], self.pids)
        return rows

    def row_of_pid(self, pid: int) -> int:
        """The row holding passage ``pid`` (pids ascend row by row)."""
        row = int(self.pids.searchsorted(pid))
        if row == len(self.pids) or int(self.pids[row]) != pid:
            raise IndexStoreError(f"{self.path}: no row with pid {pid}; rebuild the index")
        return row

    def sorted_position(self, doc_id: str) -> int:
        """Where ``doc_id`` would go in ascending doc-id order (binary search, reading only the rows it probes)."""
        import bisect

        return bisect.bisect_left(range(len(self)), doc_id, key=lambda j: self[int(self._order[j])])

    @property
    def offsets(self) -> np.ndarray:
        """Where each row starts (the row table's second column)."""
        return self._bounds[:-1]

    @property
    def order(self) -> np.ndarray:
        """The rows in ascending doc-id order (the row table's third column)."""
        return self._order


def same_pids(path: Path, pids: Sequence[int], table_pids: np.ndarray) -> None:
    """The pids read from passages.jsonl (``path``) are the row table's, row for row."""
    if len(pids) != len(table_pids):
        raise IndexStoreError(f"{path}: {len(pids)} rows, but {ROWS_FILE} lists {len(table_pids)}; rebuild the index")
    for row, (pid, listed) in enumerate(zip(pids, table_pids.tolist()), start=1):
        if pid != listed:
            raise IndexStoreError(f"{path}, row {row}: pid {pid}, but {ROWS_FILE} says {listed}; rebuild the index")


def sizes_match(folder: Path, sizes: dict[str, Any]) -> None:
    """Every file of ``sizes`` exists in ``folder`` with the recorded byte size (the cheap check at load)."""
    for name, size in sizes.items():
        path = folder / name
        try:
            actual = path.stat().st_size
        except OSError:
            raise IndexStoreError(f"{path} is missing; the index is incomplete or cannot be trusted; "
                                  "rebuild it") from None
        if actual != size:
            raise IndexStoreError(f"{path} does not match its size in manifest.json ({actual} bytes, not {size}: "
                                  "altered or truncated): the index cannot be trusted; rebuild it")
