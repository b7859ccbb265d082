"""Stored BM25 fields: immutable segments of postings on disk, memory-mapped, scored exactly as in memory.

Why: re-deriving and re-indexing every field on each load took 34 s and 3.3 GB for 100k passages. A segment
holds, per field, each term's postings (passage numbers and term frequencies) and each passage's length, as
``.npy`` arrays that :func:`numpy.load` maps without reading (``mmap_mode="r"``): a load costs a few file opens,
a query touches only its terms' postings, and memory is the page cache.

Why term frequencies and not bm25s's precomputed score matrix: a score bakes in IDF and the average length,
which every add or delete changes, so stored scores would need a full rebuild per change. Postings with
frequencies let BM25 be computed at query time from the live statistics: an add writes one new segment, a
delete only removes the passage from the live set (its postings stay until its segment is rewritten), and IDF
and average length are always exact. The arithmetic follows bm25s's Lucene variant operation for operation
(IDF in float32, the tf part in float64, float32 scores summed term by term), so rankings equal
:class:`koembed.lexical.bm25.BM25Retriever` fitted on the live passages, bit for bit.

Terms are looked up by a 64-bit hash (blake2b; sorted, binary search): a vocabulary of millions of bigrams and
pairs needs no dictionary in memory. Two terms of one field with the same hash would share postings: at 10^8
terms the chance is under 10^-3; a build that meets one says so (:class:`~koembed.errors.IndexStoreError`).
"""

from __future__ import annotations

import math
import mmap
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from koembed.errors import IndexStoreError
from koembed.files import atomic_open
from koembed.lexical.postings import field_postings, term_hashes, tf_dtype

if TYPE_CHECKING:
    import numpy as np

SEGMENT_RE = re.compile(r"^s\d{6}$")
FIELD_ARRAYS = ("terms", "indptr", "docs", "tf", "lengths")
SEGMENT_DOCS = 100_000  # passages per segment a build writes: bounds the memory of building one


def segment_files(name: str, fields: Sequence[str]) -> list[str]:
    """The plain file names of segment ``name`` (all in the version folder, beside the other files)."""
    return [f"lex.{name}.pids.npy"] + [f"lex.{name}.{f}.{a}.npy" for f in fields for a in FIELD_ARRAYS]


def write_segment(folder: Path, name: str, pids: Sequence[int], tokens: Sequence[Sequence[str]],
                  texts: Sequence[str], fields: Sequence[str]) -> list[str]:
    """Write segment ``name`` of passages ``pids`` (ascending) with their Kiwi ``tokens`` and ``texts``; returns
    the file names written (the caller fsyncs and checksums them)."""
    import numpy as np

    if not SEGMENT_RE.match(name):
        raise ValueError(f"segment name {name!r}: expected s000001")
    _save(folder / f"lex.{name}.pids.npy", np.asarray(pids, dtype=np.int64))
    for f, arrays in field_postings(fields, tokens, texts):
        for key in FIELD_ARRAYS:
            _save(folder / f"lex.{name}.{f}.{key}.npy", arrays[key])
    return segment_files(name, fields)


def merge_segments(folder: Path, name: str, sources: Sequence[str], fields: Sequence[str]) -> list[str]:
    """Write segment ``name`` holding every passage of segments ``sources`` (in ``folder``, passage ids
    ascending across them, as a build writes its chunks), from their arrays alone; returns the file names
    written. The sources stay (the caller removes them).

    Why: a query pays per segment (a binary search in each one's terms, a slice of each one's postings), so a
    1M-passage build left as ten 100k-passage chunks (chunks bound the memory of deriving the fields) searched
    several times slower than one segment. Merging needs no text or Kiwi token: a term's postings are its
    postings in each source in turn, passage numbers shifted by the passages before, so they stay ascending.
    Memory: the merged field's postings (6 bytes each) and one source's positions at a time."""
    import numpy as np

    if not SEGMENT_RE.match(name):
        raise ValueError(f"segment name {name!r}: expected s000001")
    pids = [_load(folder / f"lex.{src}.pids.npy") for src in sources]
    offsets = np.cumsum([0] + [len(p) for p in pids])
    _save(folder / f"lex.{name}.pids.npy", np.concatenate(pids).astype(np.int64))
    for f in fields:
        arrays = [{a: _load(folder / f"lex.{src}.{f}.{a}.npy") for a in FIELD_ARRAYS} for src in sources]
        terms = np.unique(np.concatenate([a["terms"] for a in arrays]))
        places = [np.searchsorted(terms, a["terms"]) for a in arrays]
        counts: np.ndarray = np.zeros(len(terms), dtype=np.int64)
        for a, at in zip(arrays, places):
            counts[at] += np.diff(a["indptr"])  # a term appears once per source
        indptr: np.ndarray = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        cursor = indptr[:-1].copy()
        docs: np.ndarray = np.empty(int(indptr[-1]), dtype=np.int32)
        tf: np.ndarray = np.empty(int(indptr[-1]), dtype=tf_dtype(max(int(a["tf"].max(initial=0)) for a in arrays)))
        for a, at, offset in zip(arrays, places, offsets.tolist()):
            df = np.diff(a["indptr"])
            # posting p of the source's term t goes to cursor[t] + (p - its first posting)
            dest = np.repeat(cursor[at] - a["indptr"][:-1], df) + np.arange(len(a["docs"]), dtype=np.int64)
            docs[dest] = a["docs"] + offset
            tf[dest] = a["tf"]
            cursor[at] += df
        merged = {"terms": terms, "indptr": indptr, "docs": docs, "tf": tf,
                  "lengths": np.concatenate([a["lengths"] for a in arrays])}
        for key in FIELD_ARRAYS:
            _save(folder / f"lex.{name}.{f}.{key}.npy", merged[key])
    return segment_files(name, fields)


def _save(path: Path, array: np.ndarray) -> None:
    import numpy as np

    with atomic_open(path, "wb") as handle:  # fsynced: the version folder that holds it is made durable
        np.save(handle, array, allow_pickle=False)


@dataclass
class _Segment:
    offset: int  # its first passage's number among all segments' passages
    pids: np.ndarray
    fields: dict[str, dict[str, np.ndarray]]


def _load(path: Path, ndim: int = 1, maps: list[mmap.mmap] | None = None) -> np.ndarray:
    """``path``'s array, memory-mapped (its mapping appended to ``maps``)."""
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: not a readable array ({exc}); rebuild the index") from None
    if array.ndim != ndim:
        raise IndexStoreError(f"{path}: expected a {ndim}-D array; rebuild the index")
    # numpy's stubs omit np.memmap's (private, always set) _mmap attribute: read it with getattr
    mapping: mmap.mmap | None = getattr(array, "_mmap", None) if isinstance(array, np.memmap) else None
    if maps is not None and mapping is not None:
        maps.append(mapping)
    return array.view(np.ndarray)  # still the mapped pages; a plain view skips np.memmap's per-slice overhead


class StoredFields:
    """The lexical segments of one index version, memory-mapped, seen as the live passages ``live_pids``
    (ascending: the index's rows in order). :meth:`field` gives what :class:`BM25Retriever` scores with."""

    def __init__(self, folder: Path, segments: Sequence[str], fields: Sequence[str], live_pids: Sequence[int],
                 k1: float, b: float):
        import numpy as np

        self.k1, self.b = k1, b
        self._maps: list[mmap.mmap] = []
        self._queries = 0
        self.segments: list[_Segment] = []
        offset = 0
        for name in segments:
            pids = _load(folder / f"lex.{name}.pids.npy")
            arrays = {f: {a: _load(folder / f"lex.{name}.{f}.{a}.npy", maps=self._maps if a in _POSTINGS else None)
                          for a in FIELD_ARRAYS} for f in fields}
            for f, a in arrays.items():
                if (len(a["lengths"]) != len(pids) or len(a["indptr"]) != len(a["terms"]) + 1
                        or len(a["docs"]) != len(a["tf"]) or int(a["indptr"][-1]) != len(a["docs"])):
                    raise IndexStoreError(f"{folder}: lexical segment {name}, field {f}: arrays of inconsistent "
                                          "sizes; rebuild the index")
            self.segments.append(_Segment(offset, pids, arrays))
            offset += len(pids)
        live = np.asarray(live_pids, dtype=np.int64)
        every = np.concatenate([s.pids for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        rows = cast("np.ndarray", np.searchsorted(live, every))  # (numpy's stubs pick the scalar overload)
        found: np.ndarray = rows < len(live)
        found[found] &= live[rows[found]] == every[found]
        if int(found.sum()) != len(live):
            raise IndexStoreError(f"{folder}: the lexical segments hold {int(found.sum())} of the {len(live)} live "
                                  "passages; rebuild the index")
        self.row_of = np.where(found, rows, -1)  # passage number -> live row, -1 when deleted
        self.n = len(live)
        self.position = np.flatnonzero(found)  # live row -> passage number (both ascend together)
        starts = np.array([s.offset for s in self.segments] + [offset], dtype=np.int64)
        self.row_starts = cast("np.ndarray", np.searchsorted(self.position, starts))  # segment i's live rows: row_starts[i:i+2]
        self.clean = [int(self.row_starts[i + 1] - self.row_starts[i]) == len(s.pids)
                      for i, s in enumerate(self.segments)]  # no deleted passage: a slice's length is its df
        self.fields = {f: _StoredField(self, f) for f in fields}

    def top_candidates(self, field_terms: Mapping[str, Sequence[str]], weights: Mapping[str, float], k: int
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """Live rows and their exact scores (the weighted sum of the fields' raw BM25 scores: what
        :meth:`BM25Retriever.combine` gives with normalization ``none``, bit for bit) of a set of passages that
        holds every passage scoring at least the k-th best score; None when pruning would not pay (most
        passages match), and the caller scores every passage instead.

        Why: scoring every posting of four fields costs a query at 1M passages ~20 ms (common syllable bigrams
        have hundreds of thousands of postings). This is MaxScore (Turtle and Flood, 1995), term at a time
        with numpy: terms by descending bound (weight x IDF, since a BM25 tf part is below 1) are read whole
        until the bound of the terms left is below the k-th best partial score; the passages seen are then
        completed term by term with binary searches in the rest's postings, dropping each passage whose
        partial score plus the remaining bound falls below the threshold. The threshold is the k-th best
        complete score of the 4k best partial ones (completed by binary search), renewed whenever it could
        stop the reading: a lower bound of the k-th best, and close to it. Passages never seen score at most
        the remaining bound, below the k-th best, so the result is exact (bounds carry a 1e-4 relative slack
        for float32 rounding)."""
        import numpy as np

        self._bound_mapped_memory()
        if self.n < _PRUNE_FROM:
            return None
        terms = [t for f in weights for t in self._query_terms(f, field_terms.get(f, ()), weights[f])]
        terms.sort(key=lambda t: -t.bound)
        left = float(sum(t.bound for t in terms))
        seen: list[np.ndarray] = []  # the passages met so far, each once
        postings: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        acc: np.ndarray = np.zeros(self.n, dtype=np.float64)
        theta, best, total, done = 0.0, 0.0, 0, 0
        for t in terms:
            if left * (1 + _SLACK) < theta:
                break
            rows, values = self.fields[t.field].postings(t)
            postings[t.field, t.term] = rows, values
            old = acc[rows]
            seen.append(rows[old == 0])  # every term's score is above 0: 0 is a passage not met yet
            old += t.weight * values
            acc[rows] = old
            best = max(best, float(old.max()))
            total += len(rows)
            left -= t.bound
            done += 1
            if total > self.n // _DENSE_SHARE:
                return None
            if left * (1 + _SLACK) < best:  # the threshold could now stop the reading: renew it
                theta = max(theta, self._probe(terms[done:], np.concatenate(seen), acc, k))
        cand = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        if done == len(terms):
            theta = _kth(acc[cand], k)
        cand = cand[(acc[cand] + left) * (1 + _SLACK) >= theta]  # in no order: nothing below needs one
        part = acc[cand]
        contribs: dict[tuple[str, str], np.ndarray] = {}
        for t in terms[done:]:
            left -= t.bound
            values = self.fields[t.field].lookup(t, cand)
            part += t.weight * values
            keep = (part + max(left, 0.0)) * (1 + _SLACK) >= theta
            if not keep.all():
                cand, part = cand[keep], part[keep]
                contribs = {key: c[keep] for key, c in contribs.items()}
                values = values[keep]
            contribs[t.field, t.term] = values
        for key, (rows, values) in postings.items():
            at = np.minimum(np.searchsorted(rows, cand), max(len(rows) - 1, 0))
            contribs[key] = np.where(rows[at] == cand, values[at], np.float32(0)) if len(rows) else \
                np.zeros(len(cand), np.float32)
        combined: np.ndarray | int = 0
        for f, w in weights.items():  # the arithmetic of BM25Retriever.combine: float32 per field, then float64
            score: np.ndarray = np.zeros(len(cand), dtype=np.float32)
            for term in field_terms.get(f, ()):
                if (f, term) in contribs:
                    score += contribs[f, term]
            combined = combined + w * score.astype(np.float64)
        return cand, np.asarray(combined, dtype=np.float64)

    def _bound_mapped_memory(self) -> None:
        """Every :data:`_MAPPED_CHECK` queries, when the process's mapped file pages pass
        :data:`MAPPED_BUDGET`, unmap the postings' pages (``MADV_DONTNEED``): they stay in the page cache, so
        later queries map them again without reading the disk (a minor fault each). Why: Linux maps up to 64 KB
        of cached pages around each page a query touches, so after a thousand queries a search process showed
        most of the index as its own resident memory (1 of its 1.6 GB at 1M passages), which memory limits
        and monitors count, though the pages are the shared page cache."""
        self._queries += 1
        if self._queries % _MAPPED_CHECK or not self._maps or not hasattr(mmap, "MADV_DONTNEED"):
            return
        try:
            with open("/proc/self/statm", "rb") as statm:
                mapped = int(statm.read().split()[2]) * mmap.PAGESIZE  # file-backed resident pages
        except (OSError, ValueError, IndexError):
            return
        if mapped > MAPPED_BUDGET:
            for mapping in self._maps:  # the postings: terms, pointers and lengths serve every query
                mapping.madvise(mmap.MADV_DONTNEED)

    def _probe(self, rest: Sequence[_QueryTerm], seen: np.ndarray, acc: np.ndarray, k: int) -> float:
        """A lower bound of the k-th best score: the :data:`_PROBE` x k best partial scores ``acc`` of the
        passages ``seen`` completed with the terms not read yet (``rest``, by binary search)."""
        import numpy as np

        part = acc[seen]
        if len(part) < k:
            return 0.0
        few = min(len(part), _PROBE * k)
        at = np.argpartition(part, len(part) - few)[len(part) - few:]
        probe, complete = seen[at], part[at]
        for t in rest:
            complete += t.weight * self.fields[t.field].lookup(t, probe)
        return _kth(complete, k)

    def _query_terms(self, field: str, terms: Sequence[str], weight: float) -> list[_QueryTerm]:
        """The distinct terms of one field's query terms that some live passage holds, with their postings'
        places in each segment, document frequency and IDF."""
        import numpy as np

        counts: dict[str, int] = {}
        for term in terms:
            counts[term] = counts.get(term, 0) + 1
        if not counts:
            return []
        distinct = list(counts)
        hashes = term_hashes(distinct)
        places: list[list[tuple[int, int, int]]] = [[] for _ in distinct]
        df: np.ndarray = np.zeros(len(distinct), dtype=np.int64)
        for i, seg in enumerate(self.segments):
            a = seg.fields[field]
            pos = cast("np.ndarray", np.searchsorted(a["terms"], hashes))
            ok: np.ndarray = pos < len(a["terms"])
            ok[ok] &= a["terms"][pos[ok]] == hashes[ok]
            for j in np.flatnonzero(ok).tolist():
                start, end = int(a["indptr"][pos[j]]), int(a["indptr"][pos[j] + 1])
                live = end - start if self.clean[i] else int(
                    (self.row_of[seg.offset + a["docs"][start:end].astype(np.int64)] >= 0).sum())
                if live:
                    places[j].append((i, start, end))
                    df[j] += live
        n = self.n
        out = []
        for j, term in enumerate(distinct):
            if df[j]:
                idf = np.float32(math.log(1 + (n - int(df[j]) + 0.5) / (int(df[j]) + 0.5)))
                out.append(_QueryTerm(field, term, places[j], idf, weight * counts[term],
                                      weight * counts[term] * float(idf)))
        return out


_SLACK = 1e-4  # relative slack on MaxScore's bounds and threshold: float32 sums round, bounds must not
_PRUNE_FROM = 50_000  # fewer passages: scoring them all is cheaper (bench/bm25_pruning.py: 0.76 against 0.92 ms
# at 7,279 MS MARCO-ko passages; 1.5 against 1.0 ms at 100k synthetic ones)
MAPPED_BUDGET = 512 << 20  # bytes of mapped file pages past which a search process unmaps the segments'
_MAPPED_CHECK = 8  # queries between two looks at the process's mapped pages (64 let a 1M index peak at 1.4 GB)
_POSTINGS = ("docs", "tf")  # the arrays unmapped then: the rest (terms, pointers, lengths) serve every query
_PROBE = 4  # after the terms read whole, the 4k best partial scores are completed for a threshold
_DENSE_SHARE = 2  # past n / 2 postings read, scoring every passage is cheaper (measured at 1M: 2, 4, 8)


def _kth(scores: np.ndarray, k: int) -> float:
    """A lower bound of the k-th best of ``scores`` (0 with fewer than k), less the slack."""
    import numpy as np

    if len(scores) < k:
        return 0.0
    return float(np.partition(scores, len(scores) - k)[len(scores) - k]) * (1 - _SLACK)


@dataclass
class _QueryTerm:
    field: str
    term: str
    places: list[tuple[int, int, int]]  # (segment, start, end) of its postings
    idf: np.float32
    weight: float  # field weight x the term's count in the query
    bound: float  # weight x IDF: no passage gets more from it


class _StoredField:
    """One field over every segment: ``scores(terms)`` as bm25s's ``get_scores`` on the live passages."""

    def __init__(self, parent: StoredFields, name: str):
        import numpy as np

        self.parent, self.name = parent, name
        lengths = [s.fields[name]["lengths"] for s in parent.segments]
        every = np.concatenate(lengths) if lengths else np.zeros(0, np.uint32)
        # live passages in passage order are the live rows in order (position: row -> passage number)
        self.lengths: np.ndarray = (every if len(every) == parent.n else every[parent.position]).astype(np.float64)
        # bm25s: numpy's mean of the integer lengths (an exact integer sum in float64, then one division)
        self.avgdl = np.float64(self.lengths.sum()) / parent.n if parent.n else np.float64(0)
        # BM25's length normalisation per live passage, once (the same float64 operations a query made per posting)
        k1, b = parent.k1, parent.b
        self.norm = k1 * ((1 - b) + b * self.lengths / self.avgdl) if self.avgdl > 0 else self.lengths

    def _tf_part(self, term: _QueryTerm, rows: np.ndarray, tf: np.ndarray) -> np.ndarray:
        import numpy as np

        return (term.idf * (tf / (self.norm[rows] + tf))).astype(np.float32)  # as scores() computes it

    def postings(self, term: _QueryTerm) -> tuple[np.ndarray, np.ndarray]:
        """(live rows ascending, float32 BM25 scores) of every live passage holding ``term``."""
        import numpy as np

        parent, rows, tfs = self.parent, [], []
        for i, start, end in term.places:
            seg = parent.segments[i]
            a = seg.fields[self.name]
            tf = a["tf"][start:end]
            if parent.clean[i]:  # its passages are the live rows from row_starts[i] on, in order
                row = a["docs"][start:end] + parent.row_starts[i]
            else:
                row = parent.row_of[seg.offset + a["docs"][start:end].astype(np.int64)]
                keep = row >= 0
                row, tf = row[keep], tf[keep]
            rows.append(row)
            tfs.append(tf)
        row = np.concatenate(rows)
        return row, self._tf_part(term, row, np.concatenate(tfs).astype(np.float64))

    def lookup(self, term: _QueryTerm, rows: np.ndarray) -> np.ndarray:
        """``term``'s float32 BM25 score of each of the live ``rows`` (any order; 0 where absent), by binary
        search in its postings: what completing a few candidates costs, instead of reading long postings."""
        import numpy as np

        parent = self.parent
        out: np.ndarray = np.zeros(len(rows), dtype=np.float32)
        segment = None if len(parent.segments) == 1 else np.searchsorted(parent.row_starts, rows, "right") - 1
        for i, start, end in term.places:
            at_rows = np.arange(len(rows)) if segment is None else np.flatnonzero(segment == i)
            if not len(at_rows):
                continue
            seg = parent.segments[i]
            a = seg.fields[self.name]
            docs = a["docs"][start:end]
            local = (rows[at_rows] - parent.row_starts[i] if parent.clean[i]
                     else parent.position[rows[at_rows]] - seg.offset)
            at = np.minimum(np.searchsorted(docs, local), len(docs) - 1)
            hit = docs[at] == local
            if hit.any():
                tf = a["tf"][start:end][at[hit]].astype(np.float64)
                out[at_rows[hit]] = self._tf_part(term, rows[at_rows[hit]], tf)
        return out

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """Each live passage's BM25 score for the query ``terms`` (terms no live passage holds count 0)."""
        import numpy as np

        scores: np.ndarray = np.zeros(self.parent.n, dtype=np.float32)
        held = {t.term: t for t in self.parent._query_terms(self.name, terms, 1.0)}
        read: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term in terms:
            if term in held:
                if term not in read:
                    read[term] = self.postings(held[term])
                rows, values = read[term]
                scores[rows] += values  # a repeated query term counts again, as in bm25s
        return scores
