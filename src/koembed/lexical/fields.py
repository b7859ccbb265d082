"""Lexical fields: the views of a text that BM25 scores, all derived from one Kiwi analysis and the text itself.

- ``unigram``: Kiwi content morphemes (``보증금/N``), as :class:`koembed.lexical.kiwi.KiwiTokenizer` returns them;
- ``bigram``: ordered pairs of adjacent content morphemes (``전세/N 보증금/N``): phrase evidence, the "ordered
  window 2" feature of Metzler and Croft's sequential dependence model;
- ``pair``: unordered pairs of content morphemes at most :data:`PAIR_WINDOW` apart (the "unordered window"
  feature), robust to the free word order of Korean;
- ``char``: character bigrams within each word of the NFKC-normalised, lower-cased text (a one-letter word is
  kept whole): a view that needs no morphological analysis, so Kiwi's segmentation errors and unknown words
  (names, new terms, OCR noise) still match.

Every field is a deterministic function of the content-morpheme sequence and the text, so a stored index keeps
only those two (``passages.jsonl``) and rebuilds every field on load without analysing any text again.
Bigrams and pairs run over the whole morpheme sequence (across sentence ends): the stored tokens carry no
sentence breaks, and the same rule on both sides keeps the stored and in-memory rankings identical.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence

FIELDS = ("unigram", "bigram", "pair", "char")
MORPHEME_FIELDS = frozenset({"unigram", "bigram", "pair"})  # need the morphological analysis
PAIR_WINDOW = 4
CHAR_N = 2
_WORD = re.compile(r"\w+")


def bigrams(tokens: Sequence[str]) -> list[str]:
    return [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


def pairs(tokens: Sequence[str], window: int = PAIR_WINDOW) -> list[str]:
    """Unordered pairs of tokens 1..window positions apart, each written in sorted order."""
    out = []
    for i, a in enumerate(tokens):
        for b in tokens[i + 1: i + 1 + window]:
            out.append(f"{a} {b}" if a <= b else f"{b} {a}")
    return out


def char_ngrams(text: str, n: int = CHAR_N) -> list[str]:
    """Character n-grams within each word (a maximal run of letters and digits) of the normalised text."""
    out = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        out.extend([word] if len(word) <= n else [word[i: i + n] for i in range(len(word) - n + 1)])
    return out


def field_length(field: str, tokens: Sequence[str], text: str) -> int:
    """``len(field_tokens(field, tokens, text))``, counted without building the terms: an index's average field
    lengths are needed before its first passage is written, and building every bigram, pair and character
    n-gram of the corpus once more just to count them was a fifth of a Qdrant build."""
    n = len(tokens)
    if field == "unigram":
        return n
    if field == "bigram":
        return max(n - 1, 0)
    if field == "pair":  # the token j places from the end pairs with min(window, j) tokens after it
        near = min(PAIR_WINDOW, n - 1)
        return near * (near + 1) // 2 + PAIR_WINDOW * max(0, n - 1 - PAIR_WINDOW) if n else 0
    if field == "char":
        return sum(1 if len(w) <= CHAR_N else len(w) - CHAR_N + 1
                   for w in _WORD.findall(unicodedata.normalize("NFKC", text).lower()))
    raise ValueError(f"unknown lexical field {field!r}: use {', '.join(FIELDS)}")


def field_tokens(field: str, tokens: Sequence[str], text: str) -> list[str]:
    """The terms of ``field`` for one text, given its content morphemes ``tokens``."""
    if field == "unigram":
        return list(tokens)
    if field == "bigram":
        return bigrams(tokens)
    if field == "pair":
        return pairs(tokens)
    if field == "char":
        return char_ngrams(text)
    raise ValueError(f"unknown lexical field {field!r}: use {', '.join(FIELDS)}")
