"""Retrievers behind one protocol (fit / search / score) and the spec grammar that names them.

``bm25*`` specs are :class:`koembed.lexical.BM25Retriever`; ``dense:`` exact dense search
(:mod:`~koembed.retrieval.dense`); ``hybrid*:`` fusion (:mod:`~koembed.retrieval.hybrid`); ``m3*:`` BGE-M3's three
outputs (:mod:`~koembed.retrieval.m3`, over :mod:`~koembed.retrieval.inverted`); ``rerank:`` a cross-encoder
stage (:mod:`~koembed.retrieval.rerank`). :class:`RetrieverFactory` builds any of them from a spec
(:mod:`~koembed.retrieval.specs`).
"""

from koembed.retrieval.base import FUSION_DEPTH, Retriever
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.hybrid import HybridRetriever
from koembed.retrieval.inverted import SparseIndex
from koembed.retrieval.m3 import M3Retriever
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH, RerankRetriever
from koembed.retrieval.specs import SPEC_HELP, Spec, hybrid_spec, parse_fusion, parse_spec

__all__ = ["DEFAULT_RERANK_DEPTH", "FUSION_DEPTH", "SPEC_HELP", "DenseRetriever", "HybridRetriever", "M3Retriever",
           "RerankRetriever", "Retriever", "RetrieverFactory", "SparseIndex", "Spec", "hybrid_spec", "parse_fusion",
           "parse_spec"]
