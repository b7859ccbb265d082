"""Builds fitted retrievers from specs, sharing loaded models and fitted children between specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from koembed.encoding.cache import cached_corpus_embeddings
from koembed.lexical import BM25Retriever, UserDict
from koembed.models import EXACT, EncodeOptions, ModelSpec, RunSettings, load_model
from koembed.models.m3 import M3Encoder, M3Output, load_m3
from koembed.models.reranker import load_reranker
from koembed.retrieval.base import Retriever
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.hybrid import HybridRetriever
from koembed.retrieval.m3 import M3Retriever
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH, RerankRetriever
from koembed.retrieval.specs import M3_KINDS, parse_spec

if TYPE_CHECKING:
    pass


class RetrieverFactory:
    """Builds retrievers from specs, sharing loaded models and fitted children between specs.

    ``dense:minilm`` and ``hybrid:bm25+dense:minilm`` in one bench load the model and embed the corpus once.
    ``settings`` say how dense models run (precision, backend, device, prompts; each spec names its model);
    ``options`` how they encode. With ``cache_dir``, corpus embeddings are stored there per model, precision and
    corpus, reused by later runs and resumed if a run was interrupted
    (:func:`koembed.encoding.cache.cached_corpus_embeddings`). ``rerank_depth``: candidates a ``rerank:`` spec
    rescores. The M3 specs of one model share one encoding of the corpus (all three outputs). ``user_dict``: words
    every lexical retriever's analyzer keeps whole.
    """

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], settings: RunSettings = EXACT,
                 options: EncodeOptions = EncodeOptions(), cache_dir: str | Path | None = None,
                 rerank_depth: int = DEFAULT_RERANK_DEPTH, user_dict: UserDict | None = None):
        self.doc_ids, self.texts = list(doc_ids), list(texts)
        self.settings, self.options, self.cache_dir = settings, options, cache_dir
        self.rerank_depth = rerank_depth
        self.user_dict = user_dict
        self._fitted: dict[str, Retriever] = {}
        self._m3: dict[str, tuple[M3Encoder, M3Output]] = {}

    def get(self, spec: str) -> Retriever:
        """A fitted retriever for ``spec``."""
        spec = spec.strip()
        if spec not in self._fitted:
            self._fitted[spec] = self._build(spec)
        return self._fitted[spec]

    def _build(self, spec: str) -> Retriever:
        parsed = parse_spec(spec)
        if parsed.kind == "bm25":
            assert parsed.lexical is not None  # parse_spec sets it for every bm25 spec
            bm25 = BM25Retriever(parsed.lexical, show_progress=self.options.show_progress, name=spec,
                                 user_dict=self.user_dict)
            bm25.fit(self.doc_ids, self.texts)
            return bm25
        if parsed.kind == "dense":
            model = load_model(self.settings.spec(parsed.model))
            dense = DenseRetriever(model, name=spec, options=self.options)
            if self.cache_dir is None:
                dense.fit(self.doc_ids, self.texts)
            else:
                dense.fit_embeddings(self.doc_ids, cached_corpus_embeddings(
                    parsed.model, model, self.doc_ids, self.texts, self.cache_dir, self.options))
            return dense
        if parsed.kind in M3_KINDS:
            if parsed.model not in self._m3:
                encoder = load_m3(self.settings.spec(parsed.model))
                self._m3[parsed.model] = (encoder, encoder.encode(self.texts, self.options, "passage"))
            encoder, corpus = self._m3[parsed.model]
            m3 = M3Retriever(encoder, spec, M3_KINDS[parsed.kind], parsed.weights, self.options)
            m3.fit_outputs(self.doc_ids, corpus)
            return m3
        if parsed.kind == "rerank":
            model = load_reranker(ModelSpec(parsed.model, precision=self.settings.precision,
                                            device=self.settings.device))
            reranker = RerankRetriever(self.get(parsed.children[0]), model, spec, self.rerank_depth, self.options)
            reranker.fit(self.doc_ids, self.texts)
            return reranker
        children = [self.get(child) for child in parsed.children]
        return HybridRetriever(children, fusion=parsed.fusion, weights=parsed.weights, name=spec, rrf_k=parsed.rrf_k)
