"""The FAISS store's BM25 half on disk: which lexical segments a version holds, and how changes update them.

The manifest's ``lexical`` record lists the segments (:mod:`koembed.lexical.segments`), oldest first, each with
its passage count; their passage ids ascend across the list, as the index's rows do. The fields stored are the
``bm25`` record's. How changes update them, without re-analysing any text:

- a build writes one segment: the fields are derived in chunks of
  :data:`~koembed.lexical.segments.SEGMENT_DOCS` passages, merged into one (a query pays per segment);
- an add writes one segment of the new passages only;
- a delete changes no segment: the passages leave ``passages.jsonl``, and the live set is what search scores
  (IDF and average length are computed from it at query time, so they stay exact);
- a segment is rewritten from its live passages' stored Kiwi tokens when more than half of it is deleted, and
  the small segments at the end (each under a tenth of a full one) are merged into one when there are more than
  :data:`MAX_SMALL` of them, so many small adds do not slow queries down;
- ``koembed index optimize`` merges every segment into one (:func:`plan_merge`), as Lucene's force-merge.

Unchanged segment files are hard-linked into the next version folder (never copied, never changed in place),
with the sha256 recorded before, so an add writes and hashes only the new passages' postings. A manifest without
``lexical`` (an index built before 0.4) is scored in memory from the stored tokens, and gets its segments at its
next change.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import IndexStoreError
from koembed.files import checksums
from koembed.lexical import LexicalConfig
from koembed.lexical.segments import (
    SEGMENT_DOCS,
    SEGMENT_RE,
    StoredFields,
    merge_segments,
    segment_files,
    write_segment,
)

if TYPE_CHECKING:
    import numpy as np

    from koembed.index.versions import IndexState

MAX_SMALL = 8
SMALL = SEGMENT_DOCS // 10


@dataclass
class Segment:
    """One segment of a version being built: stored in ``source`` (a version folder), new (``pids`` to write),
    or the merge of ``parts`` (consecutive segments, written or linked first, then merged and removed)."""

    name: str
    passages: int
    source: Path | None = None
    pids: Sequence[int] | None = None
    parts: list[Segment] | None = None

    def stored_pids(self) -> np.ndarray:
        import numpy as np

        if self.parts is not None:
            return np.concatenate([part.stored_pids() for part in self.parts])
        if self.pids is not None:
            return np.asarray(self.pids, dtype=np.int64)
        assert self.source is not None
        return np.load(self.source / f"lex.{self.name}.pids.npy", allow_pickle=False)


def fields_of(bm25: dict[str, Any]) -> tuple[str, ...]:
    return LexicalConfig.from_dict(bm25).fields


def segment_names(record: dict[str, Any] | None, bm25: dict[str, Any]) -> list[str]:
    """Every file name a manifest's ``lexical`` record implies (empty without one)."""
    if record is None:
        return []
    fields = fields_of(bm25)
    return [name for seg in record["segments"] for name in segment_files(seg["name"], fields)]


def check_record(record: Any, where: str, remedy: str) -> None:
    """A manifest's ``lexical`` record is None or ``{"segments": [{"name", "passages"}...], "next": int}``."""
    if record is None:
        return
    ok = isinstance(record, dict) and isinstance(record.get("segments"), list) and type(record.get("next")) is int
    names = []
    for seg in record.get("segments", []) if ok else []:
        ok = ok and isinstance(seg, dict) and isinstance(seg.get("name"), str) and bool(
            SEGMENT_RE.match(seg["name"])) and type(seg.get("passages")) is int and seg["passages"] >= 0
        names.append(seg.get("name") if isinstance(seg, dict) else None)
    if not ok or len(set(names)) != len(names):
        raise IndexStoreError(f"{where}: 'lexical' must be {{\"segments\": [{{\"name\": \"s000001\", \"passages\": "
                              f"count}}, ...], \"next\": number}} with distinct names; {remedy}")


def segments_of(manifest_lexical: dict[str, Any] | None, folder: Path) -> list[Segment] | None:
    if manifest_lexical is None:
        return None
    return [Segment(s["name"], s["passages"], source=folder) for s in manifest_lexical["segments"]]


def _next_name(state: IndexState) -> str:
    number = state.lexical_next
    state.lexical_next += 1
    return f"s{number:06d}"


def plan_build(state: IndexState) -> None:
    """One segment of every live passage (a new index, or an old one getting its segments), derived in chunks
    of :data:`SEGMENT_DOCS` passages (they bound the memory of deriving the fields) merged into one."""
    state.segments = [derived(state, state.pids)] if len(state.pids) else []


def derived(state: IndexState, pids: Sequence[int]) -> Segment:
    """A new segment of passages ``pids`` (ascending), its fields derived from their stored Kiwi tokens in
    chunks of :data:`SEGMENT_DOCS` passages merged into one."""
    chunks = [Segment(_next_name(state), len(pids[i: i + SEGMENT_DOCS]), pids=list(pids[i: i + SEGMENT_DOCS]))
              for i in range(0, len(pids), SEGMENT_DOCS)]
    return chunks[0] if len(chunks) == 1 else merged(state, chunks)


def merged(state: IndexState, parts: list[Segment]) -> Segment:
    """The segment that merges ``parts`` (consecutive, oldest first)."""
    return Segment(_next_name(state), sum(part.passages for part in parts), parts=parts)


def plan_merge(state: IndexState) -> bool:
    """Every segment of ``state`` merged into one (what ``koembed index optimize`` writes); False when there is
    at most one already."""
    if state.segments is None or len(state.segments) < 2:
        return False
    state.segments = [merged(state, state.segments)]
    return True


def plan_change(state: IndexState, added: Sequence[int] = ()) -> None:
    """Update ``state.segments`` after passages ``added`` (new pids, above every stored one) or deletions."""
    import numpy as np

    if state.segments is None:
        return plan_build(state)
    if added:
        state.segments.append(Segment(_next_name(state), len(added), pids=list(added)))
    live = np.asarray(state.pids, dtype=np.int64)
    kept: list[Segment] = []
    for seg in state.segments:
        pids = seg.stored_pids()
        alive = pids[np.isin(pids, live, assume_unique=True)] if len(pids) else pids
        if len(alive) == 0:
            continue  # everything in it was deleted
        if len(alive) * 2 < len(pids):
            seg = derived(state, alive.tolist())
        kept.append(seg)
    small = [i for i, seg in enumerate(kept) if seg.passages < SMALL]
    tail = len(kept)
    while tail and tail - 1 in small:
        tail -= 1
    if len(kept) - tail > MAX_SMALL:
        tail_pids = np.concatenate([seg.stored_pids() for seg in kept[tail:]])
        tail_pids = tail_pids[np.isin(tail_pids, live, assume_unique=True)]
        kept = kept[:tail] + [derived(state, tail_pids.tolist())]
    state.segments = kept


def write_segments(stage: Path, state: IndexState, old_files: dict[str, str]) -> dict[str, str]:
    """Write or link ``state.segments`` into ``stage``; their ``{file: sha256}``."""
    fields = fields_of(state.manifest.bm25)
    row_of: dict[int, int] = {}
    files: dict[str, str] = {}

    def place(seg: Segment, record: bool = True) -> None:
        """Write or link ``seg`` into ``stage``; ``record``: hash it into ``files`` (not a merge's parts, which
        are removed once merged)."""
        names = segment_files(seg.name, fields)
        if seg.parts is not None:
            for part in seg.parts:
                place(part, record=False)
            merge_segments(stage, seg.name, [part.name for part in seg.parts], fields)
            for part in seg.parts:
                for name in segment_files(part.name, fields):
                    (stage / name).unlink()
            if record:
                files.update(checksums(stage, names))
        elif seg.source is not None:
            for name in names:
                link_file(seg.source / name, stage / name)
                if name not in old_files:
                    raise IndexStoreError(f"{seg.source}: {name} has no recorded sha256; rebuild the index")
                if record:
                    files[name] = old_files[name]
        else:
            if not row_of:
                row_of.update((pid, row) for row, pid in enumerate(state.pids))
            rows = [row_of[p] for p in seg.pids or ()]
            write_segment(stage, seg.name, list(seg.pids or ()), [state.tokens[r] for r in rows],
                          [state.texts[r] for r in rows], fields)
            if record:
                files.update(checksums(stage, names))

    for seg in state.segments or ():
        place(seg)
    return files


def link_file(source: Path, target: Path) -> None:
    """A hard link (a copy on a file system without them): how unchanged files enter the next version."""
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, target)


def record(state: IndexState) -> dict[str, Any] | None:
    """The manifest's ``lexical`` record of ``state`` once written."""
    if state.segments is None:
        return None
    return {"segments": [{"name": s.name, "passages": s.passages} for s in state.segments],
            "next": state.lexical_next}


def stored_fields(folder: Path, manifest_lexical: dict[str, Any], bm25: dict[str, Any],
                  live_pids: Sequence[int]) -> StoredFields:
    """The version's segments, memory-mapped, for :meth:`koembed.lexical.BM25Retriever.use_fields`."""
    config = LexicalConfig.from_dict(bm25)
    return StoredFields(folder, [s["name"] for s in manifest_lexical["segments"]], config.fields, live_pids,
                        config.k1, config.b)
