"""BM25 as sparse vectors, for engines that score ``value x idf`` themselves (Qdrant's ``Modifier.IDF``).

Lucene's BM25 (bm25s ``method="lucene"``, what :class:`koembed.lexical.BM25Retriever` computes) scores a
passage d for a query q as ``sum over terms t of q: idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` with
``idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))``. The fraction depends only on the passage, so it is what a
passage's sparse vector holds (:func:`field_weights`); the query's vector holds each term's count (bm25s adds a
repeated query term once per occurrence); the engine multiplies by its own idf, computed over the live
collection. Qdrant's idf is Lucene's formula (``qdrant_client/local/local_collection.py``, ``_compute_idf``:
``ln((N - n + 0.5) / (n + 0.5) + 1)``), so the product is koembed's BM25 score.

Term ids are a hash, not a process-local counter, so every process and machine that writes or queries an
index agrees on them: the first 4 bytes of blake2b(term) (Qdrant's sparse indices are unsigned 32-bit).
Two morphemes that hash to one id are one term for BM25 (their counts add up, and a passage holding either
counts once for the idf); there is no collision table to keep consistent across writers. How often that
happens on real Korean vocabularies is measured in docs/BENCHMARKS.md (:func:`collisions`).

Fields (:mod:`koembed.lexical.fields`: morpheme unigrams, bigrams, pairs, character bigrams): each is BM25 with
its own average length (:class:`Field`), and a phrase-aware config sums them with weights (``bm25-phrase``).
All fields go into the one sparse vector, each in its own id space (a non-unigram term is hashed as
``field + U+001F + term``): Qdrant's idf of an id is then the idf of that term in its field, the passage's
weights carry each field's length normalisation, and the query's values carry the field weights, so the sparse
score is ``sum over fields of weight x BM25`` -- koembed's combination with ``normalization="none"``
(:func:`passage_vector`, :func:`query_vector`). Per-query normalisations of field scores need every passage's
scores and are not available in an engine that scores sparse vectors.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from koembed.lexical import LexicalConfig
from koembed.lexical.fields import field_tokens

TERM_ID_SCHEME = "blake2b-32: first 4 bytes (big-endian) of blake2b(utf-8 term)"


@dataclass(frozen=True)
class Field:
    """One BM25 field: its ``name`` (a :data:`koembed.lexical.FIELDS` name), ``weight`` in the sum, saturation
    ``k1``, length normalisation ``b`` and the average passage length ``avgdl`` in its terms (fixed when the
    index is built; see :func:`average_length`)."""

    name: str
    k1: float
    b: float
    avgdl: float
    weight: float = 1.0


@lru_cache(maxsize=1 << 20)  # a corpus repeats its terms: hashing each once makes a build's sparse half 3x faster
def term_id(term: str, field: str = "unigram") -> int:
    """A term's sparse index: the first 4 bytes of its blake2b digest, as an unsigned 32-bit integer (terms of
    fields other than ``unigram`` are hashed with their field's name in front)."""
    key = term if field == "unigram" else f"{field}\x1f{term}"
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=4).digest(), "big")


def average_length(token_lists: Iterable[Sequence[str]]) -> float:
    """Mean number of tokens per passage (empty passages count, as bm25s counts them); 1.0 for an all-empty
    corpus, so that weights stay finite."""
    total = count = 0
    for tokens in token_lists:
        total += len(tokens)
        count += 1
    return total / count if count and total else 1.0


def field_weights(tokens: Sequence[str], field: Field) -> dict[int, float]:
    """One passage's weights in ``field`` (its terms ``tokens``): ``{term id: tf / (tf + k1 (1 - b + b |d| /
    avgdl))}``, ``|d|`` = ``len(tokens)``; terms sharing an id add their counts."""
    counts = Counter(term_id(t, field.name) for t in tokens)
    norm = field.k1 * (1.0 - field.b + field.b * len(tokens) / field.avgdl)
    return {i: c / (c + norm) for i, c in counts.items()}


def passage_vector(tokens: Sequence[str], text: str, fields: Sequence[Field]) -> tuple[list[int], list[float]]:
    """A passage's sparse vector (ids ascending) over ``fields``, from its content morphemes and text."""
    out: dict[int, float] = {}
    for field in fields:
        for i, v in field_weights(field_tokens(field.name, tokens, text), field).items():
            out[i] = out.get(i, 0.0) + v
    ids = sorted(out)
    return ids, [out[i] for i in ids]


def query_vector(tokens: Sequence[str], text: str, fields: Sequence[Field]) -> tuple[list[int], list[float]]:
    """A query's sparse vector: each term's count times its field's weight (the engine applies the idf per
    occurrence, as bm25s does for a repeated query term)."""
    out: dict[int, float] = {}
    for field in fields:
        for term in field_tokens(field.name, tokens, text):
            i = term_id(term, field.name)
            out[i] = out.get(i, 0.0) + field.weight
    ids = sorted(out)
    return ids, [out[i] for i in ids]


def fields_of(config: LexicalConfig, avgdl: Mapping[str, float]) -> list[Field]:
    """The :class:`Field` list of a lexical config, with each field's average length."""
    return [Field(f, config.k1, config.b, avgdl[f], config.weights[f]) for f in config.fields]


def average_lengths(config: LexicalConfig, tokens: Sequence[Sequence[str]], texts: Sequence[str]) -> dict[str, float]:
    """Each field's average passage length in terms (see :func:`average_length`)."""
    return {f: average_length(field_tokens(f, tok, text) for tok, text in zip(tokens, texts)) for f in config.fields}


def collisions(vocabulary: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of distinct terms of ``vocabulary`` that share one term id (each group sorted)."""
    by_id: dict[int, set[str]] = {}
    for term in vocabulary:
        by_id.setdefault(term_id(term), set()).add(term)
    return sorted(tuple(sorted(terms)) for terms in by_id.values() if len(terms) > 1)
