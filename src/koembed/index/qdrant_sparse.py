"""BM25 as sparse vectors, for engines that score ``value x idf`` themselves (Qdrant's ``Modifier.IDF``).

Lucene's BM25 (bm25s ``method="lucene"``, what :class:`koembed.lexical.BM25Retriever` computes) scores a
passage d for a query q as ``sum over terms t of q: idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` with
``idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))``. The fraction depends only on the passage, so it is what a
passage's sparse vector holds (:func:`passage_vectors`); the query's vector holds each term's count (bm25s adds a
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
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING

from koembed.lexical import LexicalConfig
from koembed.lexical.fields import field_length, field_tokens

if TYPE_CHECKING:
    import numpy as np

TERM_ID_SCHEME = "blake2b-32: first 4 bytes (big-endian) of blake2b(utf-8 term)"


@dataclass(frozen=True)
class Field:
    """One BM25 field: its ``name`` (a :data:`koembed.lexical.FIELDS` name), ``weight`` in the sum, saturation
    ``k1``, length normalisation ``b`` and the average passage length ``avgdl`` in its terms (fixed when the
    index is built; see :func:`average_lengths`)."""

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


def term_ids(terms: Sequence[str], field: str = "unigram") -> np.ndarray:
    """:func:`term_id` of many terms of one field at once (int64 array): one digest per term, no per-term
    integer conversion (a build hashes every distinct term of every passage batch)."""
    import numpy as np

    if field == "unigram":
        keys = [t.encode("utf-8") for t in terms]
    else:
        prefix = f"{field}\x1f"
        keys = [(prefix + t).encode("utf-8") for t in terms]
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(k, digest_size=4).digest() for k in keys])
    return np.frombuffer(digests, dtype=">u4").astype(np.int64)


def passage_vectors(tokens: Sequence[Sequence[str]], texts: Sequence[str], fields: Sequence[Field]
                    ) -> list[tuple[list[int], list[float]]]:
    """Each passage's sparse vector (ids ascending) over ``fields``, from its content morphemes and text: in
    each field, a term's weight ``tf / (tf + k1 (1 - b + b |d| / avgdl))`` (``|d|`` the passage's number of
    terms in that field; terms sharing an id add their counts), summed over the fields (an id that two fields
    share adds up, in the fields' order).

    Computed for the whole batch with numpy (one sort of (passage, id) keys per field, one hash per distinct
    term): the per-term Python loop this replaces was half of a build's time. The arithmetic is the loop's,
    operation for operation in float64, so the vectors are the same to the bit (tests/test_qdrant.py keeps
    that loop as the reference)."""
    import numpy as np

    n = len(texts)
    if len(tokens) != n:
        raise ValueError(f"{len(tokens)} token lists for {n} texts")
    if not fields or not n:
        return [([], []) for _ in range(n)]
    keys, weights = [], []
    for field in fields:
        terms = [field_tokens(field.name, tok, text) for tok, text in zip(tokens, texts)]
        lengths = np.fromiter(map(len, terms), dtype=np.int64, count=n)
        flat = list(chain.from_iterable(terms))
        del terms
        vocabulary = {t: i for i, t in enumerate(dict.fromkeys(flat))}
        ids = term_ids(list(vocabulary), field.name)
        occurrences = ids[np.fromiter(map(vocabulary.__getitem__, flat), dtype=np.int64, count=len(flat))]
        passage: np.ndarray = np.repeat(np.arange(n, dtype=np.int64), lengths)
        key, tf = np.unique((passage << 32) | occurrences, return_counts=True)
        norm = field.k1 * ((1.0 - field.b) + field.b * lengths / field.avgdl)
        keys.append(key)
        weights.append(tf / (tf + norm[key >> 32]))
    merged, where = np.unique(np.concatenate(keys), return_inverse=True)
    # bincount adds in input order: per id, 0.0 + the first field's weight + the next's..., as the loop did
    values = np.bincount(where.reshape(-1), weights=np.concatenate(weights), minlength=len(merged))
    bounds = [0, *np.cumsum(np.bincount(merged >> 32, minlength=n)).tolist()]  # each passage's slice of merged
    id_list, value_list = (merged & 0xFFFFFFFF).tolist(), values.tolist()
    return [(id_list[a:b], value_list[a:b]) for a, b in itertools.pairwise(bounds)]


def passage_vector(tokens: Sequence[str], text: str, fields: Sequence[Field]) -> tuple[list[int], list[float]]:
    """One passage's sparse vector (:func:`passage_vectors`)."""
    return passage_vectors([tokens], [text], fields)[0]


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
    """Each field's average passage length in terms (empty passages count, as bm25s counts them; 1.0 for an
    all-empty corpus, so that weights stay finite), counted without building the terms (:func:`field_length`)."""
    out = {}
    for f in config.fields:
        total = sum(field_length(f, tok, text) for tok, text in zip(tokens, texts))
        out[f] = total / len(texts) if texts and total else 1.0
    return out


def collisions(vocabulary: Iterable[str]) -> list[tuple[str, ...]]:
    """Groups of distinct terms of ``vocabulary`` that share one term id (each group sorted)."""
    by_id: dict[int, set[str]] = {}
    for term in vocabulary:
        by_id.setdefault(term_id(term), set()).add(term)
    return sorted(tuple(sorted(terms)) for terms in by_id.values() if len(terms) > 1)
