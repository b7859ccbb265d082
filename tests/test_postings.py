"""The build side of the stored fields (koembed.lexical.postings) gives exactly the arrays of the string
construction it replaced: every field's terms from field_tokens, indexed term by term (kept here as the reference)."""

from __future__ import annotations

import random
from itertools import chain

import numpy as np
import pytest

from koembed.errors import IndexStoreError
from koembed.lexical import FIELDS
from koembed.lexical import postings as postings_module
from koembed.lexical.fields import field_tokens
from koembed.lexical.postings import field_postings, term_hashes


def _reference(docs_terms: list[list[str]]) -> dict[str, np.ndarray]:
    """The arrays as segments._field_arrays built them: a vocabulary of term strings, one np.unique of (term rank,
    passage)."""
    n = len(docs_terms)
    terms_flat = list(chain.from_iterable(docs_terms))
    vocab = {t: i for i, t in enumerate(dict.fromkeys(terms_flat))}
    flat = np.fromiter(map(vocab.__getitem__, terms_flat), dtype=np.int64, count=len(terms_flat))
    lengths = np.fromiter(map(len, docs_terms), dtype=np.int64, count=n)
    hashes = term_hashes(list(vocab))
    order = np.argsort(hashes, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    keys, tf = np.unique(rank[flat] * max(n, 1) + np.repeat(np.arange(n, dtype=np.int64), lengths),
                         return_counts=True)
    term_of, docs = np.divmod(keys, max(n, 1))
    indptr = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_of, minlength=len(order)), out=indptr[1:])
    return {"terms": hashes[order], "indptr": indptr, "docs": docs.astype(np.int32),
            "tf": tf.astype(np.uint8 if tf.max(initial=0) < 2 ** 8 else np.uint16 if tf.max(initial=0) < 2 ** 16
                            else np.uint32),
            "lengths": lengths.astype(np.uint32)}


# Morphemes with spaces (Kiwi writes multi-word names so) whose bigrams and pairs spell the same string from
# different morpheme pairs ("a/N b/N" + "c/N" and "a/N" + "b/N c/N"), repeats, and tags that sort apart.
MORPHEMES = ["a/N", "b/N", "c/N", "a/N b/N", "b/N c/N", "보증금/N", "전세/N", "돌려받/V", "못/MAG", "1590/SN",
             "윌리엄 브래드포드/N", "http://x.org/a_(b)/W", "A/SL", "ａ/N"]
# Texts with what char n-grams must get right: NFKC (full-width, ligatures, compatibility jamo, circled digits),
# case, combining marks, underscores and digits inside words, one-letter words, punctuation, emoji, line breaks.
PIECES = ["전세", "보증금을,", "ＡI!", "및", "2024년", "ﬁle", "Straße", "ÉCOLE", "e\u0301t\u00e9", "ㄱㄴ", "①②",
          "snake_case", "x", "가", "—", "🙂🙂", "a1b2", "\n", "\t", "ǅ", "İstanbul", "ŉ", "‿", "٣٤", "Ⅻ", "...", ""]


def _corpus(n: int, seed: int) -> tuple[list[list[str]], list[str]]:
    rng = random.Random(seed)
    tokens = [rng.choices(MORPHEMES, k=rng.choice([0, 1, 2, 3, 5, 9, 20])) for _ in range(n)]
    texts = [rng.choice(["", " "]).join(rng.choices(PIECES, k=rng.randint(0, 12))) for _ in range(n)]
    return tokens, texts


@pytest.mark.parametrize("n,seed", [(0, 0), (1, 1), (2, 2), (7, 3), (300, 4)])
def test_every_field_equals_the_string_construction(n, seed):
    tokens, texts = _corpus(n, seed)
    got = dict(field_postings(FIELDS, tokens, texts))
    assert list(got) == list(FIELDS)
    for field in FIELDS:
        want = _reference([field_tokens(field, tok, text) for tok, text in zip(tokens, texts)])
        for key, array in want.items():
            assert got[field][key].dtype == array.dtype, (field, key)
            assert np.array_equal(got[field][key], array), (field, key)


def test_keys_spelling_one_string_are_one_term():
    tokens = [["a/N b/N", "c/N"], ["a/N", "b/N c/N"], ["a/N b/N", "c/N", "a/N", "b/N c/N"]]
    arrays = dict(field_postings(("bigram",), tokens, ["", "", ""]))["bigram"]
    spelled = "a/N b/N c/N"
    at = int(np.searchsorted(arrays["terms"], term_hashes([spelled])[0]))
    start, end = arrays["indptr"][at], arrays["indptr"][at + 1]
    assert arrays["docs"][start:end].tolist() == [0, 1, 2] and arrays["tf"][start:end].tolist() == [1, 1, 2]


def test_a_hash_collision_is_an_error(monkeypatch):
    monkeypatch.setattr(postings_module, "term_hashes", lambda terms: np.zeros(len(terms), dtype=np.uint64))
    with pytest.raises(IndexStoreError, match="share a 64-bit hash"):
        dict(field_postings(("unigram",), [["a/N", "b/N"]], [""]))


def test_char_terms_of_random_code_points():
    """Characters from every plane (surrogates, unassigned, combining, spaces of all kinds) between Hangul and
    ASCII: the n-grams are those of fields.char_ngrams."""
    rng = random.Random(11)
    for _ in range(3):
        texts = ["".join(chr(rng.choice([rng.randint(0x20, 0x7F), rng.randint(0xAC00, 0xD7A3),
                                         rng.choice([0x20, 0x0A, 0x3000, 0xA0]), rng.randint(0, 0x10FFFF)]))
                         for _ in range(rng.randint(0, 40))) for _ in range(200)]
        got = dict(field_postings(("char",), [[] for _ in texts], texts))["char"]
        want = _reference([field_tokens("char", [], text) for text in texts])
        for key, array in want.items():
            assert got[key].dtype == array.dtype and np.array_equal(got[key], array), key
