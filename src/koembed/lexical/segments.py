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

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from koembed.errors import IndexStoreError
from koembed.files import atomic_open
from koembed.lexical.fields import field_tokens

if TYPE_CHECKING:
    import numpy as np

SEGMENT_RE = re.compile(r"^s\d{6}$")
FIELD_ARRAYS = ("terms", "indptr", "docs", "tf", "lengths")
SEGMENT_DOCS = 100_000  # passages per segment a build writes: bounds the memory of building one


def segment_files(name: str, fields: Sequence[str]) -> list[str]:
    """The plain file names of segment ``name`` (all in the version folder, beside the other files)."""
    return [f"lex.{name}.pids.npy"] + [f"lex.{name}.{f}.{a}.npy" for f in fields for a in FIELD_ARRAYS]


def term_hashes(terms: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hashes of ``terms`` (the same in every process, unlike :func:`hash`)."""
    import numpy as np

    digests = b"".join([hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in terms])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _field_arrays(docs_terms: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """One field's postings for passages 0..n-1: sorted term hashes, CSC pointers, passage numbers, tf, lengths."""
    import numpy as np

    n = len(docs_terms)
    terms_flat = list(chain.from_iterable(docs_terms))  # C-level loops only: this runs once per term occurrence
    vocab = {t: i for i, t in enumerate(dict.fromkeys(terms_flat))}
    flat = np.fromiter(map(vocab.__getitem__, terms_flat), dtype=np.int64, count=len(terms_flat))
    del terms_flat
    lengths = np.fromiter(map(len, docs_terms), dtype=np.int64, count=n)
    hashes = term_hashes(list(vocab))
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    if len(sorted_hashes) > 1 and (sorted_hashes[1:] == sorted_hashes[:-1]).any():
        raise IndexStoreError("two lexical terms share a 64-bit hash (about one chance in 10^11 per pair): "
                              "rebuild the index with other lexical fields")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    keys, tf = np.unique(rank[flat] * max(n, 1) + np.repeat(np.arange(n, dtype=np.int64), lengths),
                         return_counts=True)
    term_of, docs = np.divmod(keys, max(n, 1))
    indptr = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_of, minlength=len(order)), out=indptr[1:])
    return {"terms": sorted_hashes, "indptr": indptr, "docs": docs.astype(np.int32),
            "tf": tf.astype(np.uint16 if tf.max(initial=0) < 2 ** 16 else np.uint32),
            "lengths": lengths.astype(np.uint32)}


def write_segment(folder: Path, name: str, pids: Sequence[int], tokens: Sequence[Sequence[str]],
                  texts: Sequence[str], fields: Sequence[str]) -> list[str]:
    """Write segment ``name`` of passages ``pids`` (ascending) with their Kiwi ``tokens`` and ``texts``; returns
    the file names written (the caller fsyncs and checksums them)."""
    import numpy as np

    if not SEGMENT_RE.match(name):
        raise ValueError(f"segment name {name!r}: expected s000001")
    _save(folder / f"lex.{name}.pids.npy", np.asarray(pids, dtype=np.int64))
    for f in fields:
        arrays = _field_arrays([field_tokens(f, tok, text) for tok, text in zip(tokens, texts)])
        for key in FIELD_ARRAYS:
            _save(folder / f"lex.{name}.{f}.{key}.npy", arrays[key])
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


def _load(path: Path, ndim: int = 1) -> np.ndarray:
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"{path}: not a readable array ({exc}); rebuild the index") from None
    if array.ndim != ndim:
        raise IndexStoreError(f"{path}: expected a {ndim}-D array; rebuild the index")
    return array.view(np.ndarray)  # still the mapped pages; a plain view skips np.memmap's per-slice overhead


class StoredFields:
    """The lexical segments of one index version, memory-mapped, seen as the live passages ``live_pids``
    (ascending: the index's rows in order). :meth:`field` gives what :class:`BM25Retriever` scores with."""

    def __init__(self, folder: Path, segments: Sequence[str], fields: Sequence[str], live_pids: Sequence[int],
                 k1: float, b: float):
        import numpy as np

        self.k1, self.b = k1, b
        self.segments: list[_Segment] = []
        offset = 0
        for name in segments:
            pids = _load(folder / f"lex.{name}.pids.npy")
            arrays = {f: {a: _load(folder / f"lex.{name}.{f}.{a}.npy") for a in FIELD_ARRAYS} for f in fields}
            for f, a in arrays.items():
                if (len(a["lengths"]) != len(pids) or len(a["indptr"]) != len(a["terms"]) + 1
                        or len(a["docs"]) != len(a["tf"]) or int(a["indptr"][-1]) != len(a["docs"])):
                    raise IndexStoreError(f"{folder}: lexical segment {name}, field {f}: arrays of inconsistent "
                                          "sizes; rebuild the index")
            self.segments.append(_Segment(offset, pids, arrays))
            offset += len(pids)
        live = np.asarray(live_pids, dtype=np.int64)
        every = np.concatenate([s.pids for s in self.segments]) if self.segments else np.zeros(0, np.int64)
        rows = np.searchsorted(live, every)
        found = rows < len(live)
        found[found] &= live[rows[found]] == every[found]
        if int(found.sum()) != len(live):
            raise IndexStoreError(f"{folder}: the lexical segments hold {int(found.sum())} of the {len(live)} live "
                                  "passages; rebuild the index")
        self.row_of = np.where(found, rows, -1)  # passage number -> live row, -1 when deleted
        self.n = len(live)
        self.fields = {f: _StoredField(self, f) for f in fields}


class _StoredField:
    """One field over every segment: ``scores(terms)`` as bm25s's ``get_scores`` on the live passages."""

    def __init__(self, parent: StoredFields, name: str):
        import numpy as np

        self.parent, self.name = parent, name
        lengths = [s.fields[name]["lengths"] for s in parent.segments]
        every = np.concatenate(lengths).astype(np.float64) if lengths else np.zeros(0)
        alive = parent.row_of >= 0
        self.lengths = np.zeros(parent.n, dtype=np.float64)
        self.lengths[parent.row_of[alive]] = every[alive]
        # bm25s: numpy's mean of the integer lengths (an exact integer sum in float64, then one division)
        self.avgdl = np.float64(self.lengths.sum()) / parent.n if parent.n else np.float64(0)
        # BM25's length normalisation per live passage, once (the same float64 operations a query made per posting)
        k1, b = parent.k1, parent.b
        self.norm = k1 * ((1 - b) + b * self.lengths / self.avgdl) if self.avgdl > 0 else self.lengths

    def _postings(self, term_hash: int) -> tuple[np.ndarray, np.ndarray]:
        """(live rows, term frequencies) of one term across the segments."""
        import numpy as np

        rows, tfs = [], []
        for seg in self.parent.segments:
            a = seg.fields[self.name]
            pos = int(np.searchsorted(a["terms"], np.uint64(term_hash)))
            if pos < len(a["terms"]) and int(a["terms"][pos]) == term_hash:
                start, end = int(a["indptr"][pos]), int(a["indptr"][pos + 1])
                rows.append(self.parent.row_of[seg.offset + a["docs"][start:end].astype(np.int64)])
                tfs.append(a["tf"][start:end])
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        row, tf = np.concatenate(rows), np.concatenate(tfs).astype(np.float64)
        keep = row >= 0
        return row[keep], tf[keep]

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """Each live passage's BM25 score for the query ``terms`` (terms no live passage holds count 0)."""
        import numpy as np

        n = self.parent.n
        scores = np.zeros(n, dtype=np.float32)
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, h in zip(terms, term_hashes(list(terms)).tolist()) if terms else ():
            if term not in cache:
                rows, tf = self._postings(h)
                if len(rows):
                    idf = np.float32(math.log(1 + (n - len(rows) + 0.5) / (len(rows) + 0.5)))
                    tfc = tf / (self.norm[rows] + tf)
                    cache[term] = rows, (idf * tfc).astype(np.float32)
                else:
                    cache[term] = rows, np.zeros(0, np.float32)
            rows, values = cache[term]
            scores[rows] += values  # a repeated query term counts again, as in bm25s
        return scores
