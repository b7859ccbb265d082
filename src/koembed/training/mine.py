"""Hard-negative mining: for each (query, positive) pair, passages a retriever ranks high that are not positives.

Why: in-batch negatives are mostly easy; passages that BM25 or a dense model confuse with the answer teach the
model more per step (NV-Retriever, Moreira et al. 2024). Two guards against false negatives (unjudged passages
that do answer the query):
- a rank window ``[a, b]`` skips the very top of the ranking, where unjudged answers concentrate;
- a relative margin drops candidates that the retriever scores almost as high as the positive.

The margin follows sentence-transformers' ``mine_hard_negatives(relative_margin=...)``
(``sentence_transformers/util/hard_negatives.py``, 6.2): a candidate is dropped when
``score > positive_score - |positive_score| * (1 - margin)``, i.e. ``score > margin * positive_score`` for a
non-negative positive score (BM25, usual cosine); ``margin=0.95`` is ``relative_margin=0.05``. As there,
the positive score of a query with several positives is the lowest of them (the safe side), candidates equal
to the threshold are kept, and a query's positives are never its negatives.
Unlike there, ranks are the retriever's own (1-based, positives included), so ``[a, b]`` means the same
window for every query, and candidates come from a koembed retriever spec (``bm25``, ``dense:<model>``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from koembed.data import Pair
from koembed.errors import SpecError
from koembed.models import EXACT, EncodeOptions, RunSettings
from koembed.progress import progress
from koembed.ranking import Hit
from koembed.retrieval.base import Retriever
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.specs import parse_spec

QUERY_CHUNK = 1024  # queries searched per retriever call: bounds memory and paces the progress bar


@dataclass
class _Query:
    """One distinct query text with everything its pairs share: positives, margin and mined negatives."""

    text: str
    positives: list[str] = field(default_factory=list)  # stripped texts, first-seen order
    negatives: tuple[str, ...] = ()


def mine_hard_negatives(pairs: Sequence[Pair], corpus: dict[str, str] | None = None, retriever_spec: str = "bm25",
                        negatives: int = 5, rank_range: tuple[int, int] = (10, 100), margin: float | None = 0.95,
                        settings: RunSettings = EXACT, options: EncodeOptions = EncodeOptions(),
                        ) -> tuple[list[Pair], dict[str, int]]:
    """Mine up to ``negatives`` hard negatives per pair; return new pairs and counts.

    - ``corpus`` ({doc_id: text}, e.g. a retrieval set's ``.corpus``) is searched together with every positive
      missing from it (matched by stripped text), so a positive can be recognised and never becomes a negative.
      ``None``: the pairs' positives alone are the corpus.
    - For each distinct query, candidates are the retriever's hits at ranks ``a..b`` (1-based, inclusive),
      best first. Skipped: any positive of that query (a query text may appear in several pairs), BM25 hits
      scoring 0 (no shared term: not hard, and ordered only by id, so every such query would get the same
      few passages), candidates failing the margin (module docstring; ``None`` disables it), and repeats of
      a text already chosen.
      The first ``negatives`` survivors, in rank order, are the negatives of every pair of that query.
    - Input negatives are replaced. A pair with fewer survivors keeps what it got.
    - The margin needs the positive's score: taken from the hits when the positive is among them, otherwise
      scored directly (BM25 scores the query over the positive; a dense model compares the embeddings already
      computed). Fused hybrid scores have no such score, so a hybrid spec requires ``margin=None``.

    Returns ``(pairs, stats)``; stats: ``pairs``, ``queries`` (distinct), ``with_full_negatives``,
    ``with_fewer``, and, summed over each distinct query's rank window, ``excluded_positives`` and
    ``dropped_by_margin``. BM25 returns only passages sharing a term with the query, so a query can get
    fewer negatives than asked. Raises :class:`~koembed.errors.SpecError` for a bad spec
    (before any work), ValueError for bad numbers, and whatever loading a model raises.
    """
    low, high = rank_range
    if not 1 <= low <= high:
        raise ValueError(f"rank range must satisfy 1 <= a <= b, got {low}:{high}")
    if negatives < 1:
        raise ValueError(f"negatives must be at least 1, got {negatives}")
    if margin is not None and margin <= 0:
        raise ValueError(f"margin must be positive or None, got {margin}")
    if margin is not None and parse_spec(retriever_spec).kind == "hybrid":
        raise SpecError(f"{retriever_spec!r}: a margin needs a bm25 or dense retriever (fused scores have no "
                        "positive score to compare with); disable the margin for hybrid retrievers")

    queries: dict[str, _Query] = {}
    for pair in pairs:
        q = queries.setdefault(pair.query, _Query(pair.query))
        if pair.positive.strip() not in q.positives:
            q.positives.append(pair.positive.strip())
    stats = {"pairs": len(pairs), "queries": len(queries), "with_full_negatives": 0, "with_fewer": 0,
             "excluded_positives": 0, "dropped_by_margin": 0}
    if not pairs:
        return [], stats

    doc_ids, texts, index_of = _searchable_corpus(corpus or {}, [p.positive for p in pairs])
    retriever = RetrieverFactory(doc_ids, texts, settings=settings, options=options).get(retriever_spec)
    retriever.show_progress = False  # fitting showed its bars; per-chunk search bars would only clutter ours
    row_of = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    todo = list(queries.values())
    with progress(total=len(todo), desc="Mining", unit="query", disable=not options.show_progress) as bar:
        for start in range(0, len(todo), QUERY_CHUNK):
            chunk = todo[start: start + QUERY_CHUNK]
            texts_of_chunk = [q.text for q in chunk]
            all_hits = retriever.search(texts_of_chunk, high)
            thresholds: list[float | None] = [None] * len(chunk)
            if margin is not None:
                positive_rows = [[index_of[p] for p in q.positives] for q in chunk]
                scores = _positive_scores(retriever, texts_of_chunk, positive_rows, all_hits, doc_ids)
                # relative_margin = 1 - margin, in sentence-transformers' sign-safe form
                thresholds = [s - abs(s) * (1.0 - margin) for s in scores]
            for q, hits, threshold in zip(chunk, all_hits, thresholds):
                chosen: list[str] = []
                seen: set[str] = set()
                for doc_id, score in hits[low - 1: high]:
                    text = texts[row_of[doc_id]]
                    key = text.strip()
                    if key in q.positives:
                        stats["excluded_positives"] += 1
                    elif threshold is not None and score > threshold:
                        stats["dropped_by_margin"] += 1
                    elif key not in seen and len(chosen) < negatives:
                        chosen.append(text)
                        seen.add(key)
                q.negatives = tuple(chosen)
            bar.update(len(chunk))

    out = [Pair(p.query, p.positive, queries[p.query].negatives) for p in pairs]
    stats["with_full_negatives"] = sum(len(p.negatives) == negatives for p in out)
    stats["with_fewer"] = len(out) - stats["with_full_negatives"]
    return out, stats


def _searchable_corpus(corpus: dict[str, str], positives: Sequence[str]
                       ) -> tuple[list[str], list[str], dict[str, int]]:
    """Corpus ids and texts plus each positive missing from it (generated ids that cannot clash), and
    stripped text -> first row holding it, to find a positive's row."""
    doc_ids, texts = list(corpus), list(corpus.values())
    index_of: dict[str, int] = {}
    for row, text in enumerate(texts):
        index_of.setdefault(text.strip(), row)
    taken = set(doc_ids)
    serial = 0
    for positive in positives:
        key = positive.strip()
        if key in index_of:
            continue
        while f"koembed-positive-{serial}" in taken:
            serial += 1
        doc_ids.append(f"koembed-positive-{serial}")
        texts.append(positive)
        index_of[key] = len(texts) - 1
        serial += 1
    return doc_ids, texts, index_of


def _positive_scores(retriever: Retriever, queries: Sequence[str], positive_rows: Sequence[Sequence[int]],
                     hits: Sequence[Sequence[Hit]], doc_ids: Sequence[str]) -> list[float]:
    """Per query, the lowest score among its positives, on the retriever's own scale.

    A positive found in the hits keeps that score; the others are scored by :meth:`Retriever.score` (BM25's
    score vector; a dense retriever's cached embeddings), the same numbers search used.
    """
    found: list[dict[int, float]] = []
    missing: list[tuple[int, int]] = []  # (query position, corpus row)
    for qi, (rows, query_hits) in enumerate(zip(positive_rows, hits)):
        in_hits = {doc: score for doc, score in query_hits}
        scores = {row: in_hits[doc_ids[row]] for row in rows if doc_ids[row] in in_hits}
        missing.extend((qi, row) for row in rows if row not in scores)
        found.append(scores)
    for (qi, row), value in zip(missing, retriever.score(queries, missing) if missing else []):
        found[qi][row] = value
    return [min(scores.values()) for scores in found]
