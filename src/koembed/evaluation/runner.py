"""Run retrievers on a retrieval set: both metric suites, results JSON, TREC-style run files, a plot.

Every number is computed from the run that is written with it (top ``RUN_DEPTH`` hits per query), so
anyone can recompute the metrics from the run files alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from koembed.data import RetrievalSet
from koembed.evaluation.metrics import (
    AUTORAG_TOP_K,
    IR_DEPTH,
    autorag_metrics,
    ir_metrics,
)
from koembed.evaluation.metrics.tables import SIMILARITIES
from koembed.lexical import UserDict
from koembed.models import EXACT, EncodeOptions, ModelSpec, RunSettings, load_model
from koembed.ranking import Hit
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH
from koembed.retrieval.specs import parse_spec

RUN_DEPTH = IR_DEPTH  # 100: what map@100 needs, and what run files hold


# make bench: phrase-aware BM25 (the best measured on every held-out set, first) with each analyzer (MeCab-ko, the
# default, and Kiwi: which one wins on a user's corpus is worth seeing), plain BM25 and the bundled Korean static
# model. No fusion: fitted on KorQuAD's train articles and MS MARCO-ko's train half (koembed tune-fusion), static-ko
# adds nothing to MeCab-ko BM25 or to bm25-phrase (every fusion's worst-set gain 0; docs/BENCHMARKS.md).
DEFAULT_RETRIEVERS = ("bm25-phrase", "bm25-phrase@kiwi", "bm25", "dense:static-ko")


@dataclass
class RetrieverResult:
    retriever: str
    ir: dict[str, float]
    autorag: dict[str, dict[str, float]]
    seconds: float
    hits: dict[str, list[Hit]] = field(repr=False)
    run: str | None = None
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)  # per model component: query, passage

    def to_json(self) -> dict[str, object]:
        return {"retriever": self.retriever, "ir": self.ir, "autorag": self.autorag, "run": self.run,
                "seconds": round(self.seconds, 3), "prompts": self.prompts}


def score_run(rs: RetrievalSet, hits: dict[str, list[Hit]], top_k: Sequence[int]) -> tuple[dict, dict]:
    """Both suites on one run: the IR suite on the full ranking, AutoRAG's on its first k hits."""
    rankings = {qid: [doc for doc, _ in h] for qid, h in hits.items()}
    ir = ir_metrics(rankings, {qid: rs.relevant_ids(qid) for qid in rs.relevant})
    autorag = {str(k): autorag_metrics(rankings, rs.relevant, k) for k in top_k}
    return ir, autorag


def run_bench(rs: RetrievalSet, specs: Sequence[str], top_k: Sequence[int] = AUTORAG_TOP_K,
              settings: RunSettings = EXACT, options: EncodeOptions = EncodeOptions(),
              cache_dir: str | Path | None = None, rerank_depth: int = DEFAULT_RERANK_DEPTH,
              user_dict: UserDict | None = None) -> list[RetrieverResult]:
    """Fit and run each retriever spec on ``rs`` and score it. Dense models are loaded once per bench and run as
    ``settings`` say (precision, backend, device, prompt overrides; :func:`koembed.models.load_model`); with
    ``cache_dir`` dense corpus embeddings are stored and reused across runs (same model and corpus).
    ``user_dict``: words every lexical retriever's analyzer keeps whole.
    ``rerank_depth``: first-stage hits a ``rerank:`` spec rescores (its run holds that many per query)."""
    if not specs:
        raise ValueError("no retriever given")
    for spec in specs:
        parse_spec(spec)
    depth = max(RUN_DEPTH, *top_k)
    factory = RetrieverFactory(rs.doc_ids, list(rs.corpus.values()), settings=settings, options=options,
                               cache_dir=cache_dir, rerank_depth=rerank_depth, user_dict=user_dict)
    qids = rs.query_ids
    texts = [rs.queries[q] for q in qids]
    results = []
    for spec in specs:
        start = time.perf_counter()
        retriever = factory.get(spec)
        hits = dict(zip(qids, retriever.search(texts, depth)))
        seconds = time.perf_counter() - start
        ir, autorag = score_run(rs, hits, top_k)
        results.append(RetrieverResult(spec, ir, autorag, seconds, hits, prompts=retriever_prompts(retriever)))
    return results


def retriever_prompts(retriever: object) -> dict[str, dict[str, str]]:
    """The query and passage prompts of every embedding model in a retriever (hybrid children and a rerank's first
    stage included), by component name: what a results file records."""
    found: dict[str, dict[str, str]] = {}
    prompts = getattr(retriever, "prompts", None)
    if prompts is not None:
        found[getattr(retriever, "name", "")] = prompts.to_json()
    parts = list(getattr(retriever, "children", [])) + ([retriever.first] if hasattr(retriever, "first") else [])
    for part in parts:
        found.update(retriever_prompts(part))
    return found


def evaluate_model(rs: RetrievalSet, model: ModelSpec | str, options: EncodeOptions = EncodeOptions()
                   ) -> dict[str, float]:
    """The card's IR suite for one model, for cosine and dot similarity (``cosine_ndcg@10``, ``dot_mrr@10``...)."""
    spec = ModelSpec(model, EXACT) if isinstance(model, str) else model  # eval's default: exact fp32
    dense = DenseRetriever(load_model(spec), name=spec.name, similarity="cosine", options=options)
    dense.fit(rs.doc_ids, list(rs.corpus.values()))
    qids = rs.query_ids
    texts = [rs.queries[q] for q in qids]
    out: dict[str, float] = {}
    for similarity in SIMILARITIES:
        hits = dict(zip(qids, dense.with_similarity(similarity).search(texts, RUN_DEPTH)))
        ir, _ = score_run(rs, hits, ())
        out.update({f"{similarity}_{name}": value for name, value in ir.items()})
    return out
