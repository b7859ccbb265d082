"""The build side of the stored BM25 fields: each field's postings for a segment, computed with numpy.

Why: deriving every field's terms as Python strings (:func:`koembed.lexical.fields.field_tokens`, ~110 pair
strings per passage) and indexing them string by string was two thirds of a 1M-passage build besides Kiwi. Here
the content morphemes get integer ids once (in sorted order, so ``a <= b`` of two morphemes is ``id(a) <=
id(b)``), a bigram or pair is the integer ``id(a) * V + id(b)``, and a character n-gram is its code points read
in base 0x110001 from the text's UTF-32; the keys are numbered by a hash table and counted per passage by a
sparse-matrix conversion, both linear in C. Strings are made only for the distinct terms, to hash them
(:func:`term_hashes`, the keys queries look up). For 100k passages, ``bm25-phrase``'s four fields took 30 s of
CPU before and 5.4 s after (docs/BENCHMARKS.md, "The build besides Kiwi").

The arrays equal those built from :func:`~koembed.lexical.fields.field_tokens`' terms (tests/test_postings.py
keeps that construction as the reference): the same terms, hashes, postings and lengths. Two integer keys that
spell the same string (a morpheme holding a space: ``"a b" + "c"`` and ``"a" + "b c"`` are both the bigram
``"a b c"``) are merged into one term, as the string construction has them.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING

from koembed.errors import IndexStoreError
from koembed.lexical.fields import _WORD, CHAR_N, MORPHEME_FIELDS, PAIR_WINDOW

if TYPE_CHECKING:
    import numpy as np

    Names = Callable[[np.ndarray], list[str]]

BASE = 0x110001  # one more than the code points: a character n-gram's key is its code points + 1 in this base


def term_hashes(terms: Sequence[str]) -> np.ndarray:
    """Stable 64-bit hashes of ``terms`` (the same in every process, unlike :func:`hash`)."""
    import numpy as np

    digests = b"".join([hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in terms])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def tf_dtype(most: int) -> type:
    """The smallest unsigned type that holds term frequencies up to ``most`` (most are 1-3: a byte a posting)."""
    import numpy as np

    return np.uint8 if most < 2 ** 8 else np.uint16 if most < 2 ** 16 else np.uint32


def field_postings(fields: Sequence[str], tokens: Sequence[Sequence[str]], texts: Sequence[str]
                   ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Per field, the postings of passages 0..n-1 (their Kiwi ``tokens`` and ``texts``): sorted term hashes
    (``terms``), CSC pointers (``indptr``), passage numbers (``docs``), term frequencies (``tf``) and each
    passage's field length (``lengths``). One field at a time, so only one field's arrays are in memory."""
    n = len(tokens)
    morphemes = _Morphemes(tokens) if MORPHEME_FIELDS & set(fields) else None
    for field in fields:
        if field == "char":
            term, doc, names = _char_terms(texts)
        elif field in MORPHEME_FIELDS:
            assert morphemes is not None
            term, doc, names = morphemes.terms(field)
        else:
            raise ValueError(f"unknown lexical field {field!r}")
        yield field, _postings(term, doc, n, names)


class _Morphemes:
    """The content morphemes of every passage as sorted-vocabulary ids, and the integer terms of each Kiwi field."""

    def __init__(self, tokens: Sequence[Sequence[str]]):
        import numpy as np

        flat = list(chain.from_iterable(tokens))  # C-level loops: these run once per morpheme occurrence
        self.vocab = sorted(set(flat))
        index = {t: i for i, t in enumerate(self.vocab)}
        self.ids = np.fromiter(map(index.__getitem__, flat), dtype=np.int32, count=len(flat))
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        self.doc: np.ndarray = np.repeat(np.arange(len(tokens), dtype=np.int32), lengths)

    def terms(self, field: str) -> tuple[np.ndarray, np.ndarray, Names]:
        """(term key per occurrence, its passage, the strings of keys) of ``unigram``, ``bigram`` or ``pair``."""
        import numpy as np

        ids, doc, size = self.ids, self.doc, len(self.vocab)
        if field == "unigram":
            return ids, doc, lambda keys: [self.vocab[k] for k in keys.tolist()]
        # both morphemes in one passage (the sequence runs across sentences), ``gap`` positions apart
        same = [doc[gap:] == doc[:-gap] for gap in range(1, (PAIR_WINDOW if field == "pair" else 1) + 1)]
        total = sum(int(np.count_nonzero(m)) for m in same)
        keys: np.ndarray = np.empty(total, dtype=np.int64)
        docs: np.ndarray = np.empty(total, dtype=np.int32)
        at = 0
        for gap, mask in enumerate(same, start=1):
            a, b = ids[:-gap][mask], ids[gap:][mask]
            if field == "pair":  # unordered: written in sorted order, which the sorted ids keep
                a, b = np.minimum(a, b), np.maximum(a, b)
            end = at + len(a)
            np.multiply(a, size, out=keys[at:end], dtype=np.int64)
            keys[at:end] += b
            docs[at:end] = doc[:-gap][mask]
            at = end
        return keys, docs, self._pair_names

    def _pair_names(self, keys: np.ndarray) -> list[str]:
        first: np.ndarray
        second: np.ndarray
        first, second = divmod(keys, max(len(self.vocab), 1))
        vocab = self.vocab
        return [f"{vocab[a]} {vocab[b]}" for a, b in zip(first.tolist(), second.tolist())]


def _char_terms(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, Names]:
    """:func:`koembed.lexical.fields.char_ngrams` of every text as integer keys: the n-grams of each word (a
    maximal run of ``\\w`` characters) of the NFKC-normalised, lower-cased text, a word of up to n letters whole."""
    import numpy as np

    if BASE ** CHAR_N >= 2 ** 63:
        raise ValueError(f"character {CHAR_N}-grams do not fit 64-bit keys")
    normal = [unicodedata.normalize("NFKC", t).lower() for t in texts]
    lengths = np.fromiter(map(len, normal), dtype=np.int64, count=len(normal))
    # one string, passages apart by a non-word character; surrogatepass: a lone surrogate is one code unit
    points = np.frombuffer("\n".join(normal).encode("utf-32-le", "surrogatepass"), dtype="<u4")
    del normal
    seen: np.ndarray = np.zeros(0x110000, dtype=bool)
    seen[points] = True
    is_word: np.ndarray = np.zeros(0x110000, dtype=bool)
    is_word[seen] = [_WORD.fullmatch(chr(c)) is not None for c in np.flatnonzero(seen).tolist()]
    word = is_word[points]
    count = len(word) - CHAR_N + 1
    full = word[:max(count, 0)].copy()  # n-grams: every start whose n characters are all word ones
    for j in range(1, CHAR_N):
        full &= word[j: j + count]
    begins = [np.flatnonzero(full)]
    keys = [_spelled(points, begins[0], CHAR_N)]
    if CHAR_N > 1:  # shorter words, whole: runs of word characters from a start to an end
        edge: np.ndarray = np.zeros(len(word) + 1, dtype=bool)
        np.not_equal(word[1:], word[:-1], out=edge[1:-1])
        edge[0], edge[-1] = word[:1].any(), word[-1:].any()
        starts, ends = np.flatnonzero(edge[:-1] & word), np.flatnonzero(edge[1:] & word)
        for size in range(1, CHAR_N):
            begins.append(starts[ends - starts == size - 1])
            keys.append(_spelled(points, begins[-1], size))
    doc: np.ndarray = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths + 1)  # the passage of each character
    return np.concatenate(keys), doc[np.concatenate(begins)], _char_names


def _spelled(points: np.ndarray, begin: np.ndarray, size: int) -> np.ndarray:
    """The keys of the ``size`` characters from each of ``begin``: their code points + 1, in base :data:`BASE`."""
    import numpy as np

    key = points[begin].astype(np.int64)
    key += 1
    for j in range(1, size):
        key *= BASE
        key += points[j:][begin]
        key += 1
    return key


def _char_names(keys: np.ndarray) -> list[str]:
    out = []
    for key in keys.tolist():
        chars = []
        while key:
            key, point = divmod(key, BASE)
            chars.append(chr(point - 1))
        out.append("".join(reversed(chars)))
    return out


def _postings(term: np.ndarray, doc: np.ndarray, n: int, names: Names) -> dict[str, np.ndarray]:
    """The arrays of :func:`field_postings` from each occurrence's integer term key and passage number: the keys
    numbered by a hash table (pandas' ``factorize``), the (term, passage) counts summed by scipy's COO -> CSR
    conversion (a counting sort in C++), the rows put in hash order. Both linear: a comparison sort of the
    (term, passage) pairs took twice as long."""
    import numpy as np
    import pandas as pd
    from scipy import sparse

    codes, distinct = pd.factorize(term)
    strings = names(np.asarray(distinct))
    hashes = term_hashes(strings)
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    if len(sorted_hashes) > 1 and (sorted_hashes[1:] == sorted_hashes[:-1]).any():
        spelled = list(dict.fromkeys(strings))
        if len(spelled) == len(strings):
            raise IndexStoreError("two lexical terms share a 64-bit hash (about one chance in 10^11 per pair): "
                                  "rebuild the index with other lexical fields")
        number = {s: i for i, s in enumerate(spelled)}  # keys that spell one string are one term
        merged = np.fromiter(map(number.__getitem__, strings), dtype=np.int64, count=len(strings))
        return _postings(merged[codes], doc, n, lambda keys: [spelled[k] for k in keys.tolist()])
    ones: np.ndarray = np.ones(len(codes), dtype=np.int32 if len(codes) < 2 ** 31 else np.int64)
    matrix = sparse.csr_matrix((ones, (codes, doc)), shape=(len(strings), n))  # duplicates summed: tf
    matrix.sum_duplicates()  # (already so after the conversion; states what the arrays below rely on)
    matrix = matrix[order]  # rows in hash order, each one's passages ascending
    tf = matrix.data
    return {"terms": sorted_hashes, "indptr": matrix.indptr.astype(np.int64),
            "docs": matrix.indices.astype(np.int32),
            "tf": tf.astype(tf_dtype(int(tf.max(initial=0)))),
            "lengths": np.bincount(doc, minlength=n).astype(np.uint32)}
