"""Korean lexical retrieval: Kiwi morphological analysis (:mod:`.kiwi`), the lexical fields derived from it
(:mod:`.fields`: morpheme unigrams, bigrams, unordered pairs, character n-grams) and BM25 over a weighted set of
fields (:mod:`.bm25`); :data:`PRESETS` are the lexical retrievers a spec names."""

from koembed.lexical.bm25 import DEFAULT, DEFAULT_SPEC, PRESETS, BM25Retriever, LexicalConfig, lexical_config
from koembed.lexical.fields import FIELDS
from koembed.lexical.kiwi import KiwiTokenizer

__all__ = ["DEFAULT", "DEFAULT_SPEC", "FIELDS", "PRESETS", "BM25Retriever", "KiwiTokenizer", "LexicalConfig",
           "lexical_config"]
