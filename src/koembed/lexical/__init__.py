"""Korean lexical retrieval: analyzers behind one protocol (:mod:`.analyzer`: MeCab-ko, :mod:`.mecab`, and Kiwi,
:mod:`.kiwi`), the lexical fields derived from their morphemes (:mod:`.fields`: morpheme unigrams, bigrams,
unordered pairs, character n-grams) and BM25 over a weighted set of fields (:mod:`.bm25`); :data:`PRESETS` are
the lexical retrievers a spec names."""

from koembed.lexical.analyzer import (
    ANALYZERS,
    DEFAULT_ANALYZER,
    LEGACY_ANALYZER,
    Analyzer,
    UserDict,
    get_analyzer,
)
from koembed.lexical.bm25 import (
    DEFAULT,
    DEFAULT_SPEC,
    PRESETS,
    BM25Retriever,
    LexicalConfig,
    lexical_config,
    lexical_spec,
    lexical_with_analyzer,
)
from koembed.lexical.fields import FIELDS
from koembed.lexical.kiwi import KiwiTokenizer

__all__ = ["ANALYZERS", "DEFAULT", "DEFAULT_ANALYZER", "DEFAULT_SPEC", "FIELDS", "LEGACY_ANALYZER", "PRESETS",
           "Analyzer", "BM25Retriever", "KiwiTokenizer", "LexicalConfig", "UserDict", "get_analyzer",
           "lexical_config", "lexical_spec", "lexical_with_analyzer"]
