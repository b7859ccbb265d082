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

Fields: each named sparse vector is one BM25 field with its own tokens, k1, b and average length
(:class:`Field`); ``bm25`` (content morphemes) is the one koembed writes today. A new field (morpheme
bigrams, character n-grams) is a new :class:`Field` whose tokens come from its own analyser.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

TERM_ID_SCHEME = "blake2b-32: first 4 bytes (big-endian) of blake2b(utf-8 term)"


@dataclass(frozen=True)
class Field:
    """One BM25 field: the sparse vector ``name``, its saturation ``k1``, length normalisation ``b`` and the
    average passage length ``avgdl`` in tokens (fixed when the index is built; see :func:`average_length`)."""

    name: str
    k1: float
    b: float
    avgdl: float


def term_id(term: str) -> int:
    """A term's sparse index: the first 4 bytes of its blake2b digest, as an unsigned 32-bit integer."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


def average_length(token_lists: Iterable[Sequence[str]]) -> float:
    """Mean number of tokens per passage (empty passages count, as bm25s counts them); 1.0 for an all-empty
    corpus, so that weights stay finite."""
    total = count = 0
    for tokens in token_lists:
        total += len(tokens)
        count += 1
    return total / count if count and total else 1.0


def field_weights(tokens: Sequence[str], field: Field) -> tuple[list[int], list[float]]:
    """One passage's sparse vector in ``field``: ``(term ids, tf / (tf + k1 (1 - b + b |d| / avgdl)))``, ids
    ascending. ``|d|`` is ``len(tokens)``; terms sharing an id add their counts."""
    counts = Counter(term_id(t) for t in tokens)
    norm = field.k1 * (1.0 - field.b + field.b * len(tokens) / field.avgdl)
    ids = sorted(counts)
    return ids, [counts[i] / (counts[i] + norm) for i in ids]


def query_weights(tokens: Sequence[str]) -> tuple[list[int], list[float]]:
    """A query's sparse vector: each term id with its count (the engine's idf is applied per occurrence)."""
    counts = Counter(term_id(t) for t in tokens)
    ids = sorted(counts)
    return ids, [float(counts[i]) for i in ids]


def collisions(vocabulary: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of distinct terms of ``vocabulary`` that share one term id (each group sorted)."""
    by_id: dict[int, set[str]] = {}
    for term in vocabulary:
        by_id.setdefault(term_id(term), set()).add(term)
    return sorted(tuple(sorted(terms)) for terms in by_id.values() if len(terms) > 1)
