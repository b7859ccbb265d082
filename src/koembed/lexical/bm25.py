"""BM25 over one or more lexical fields (bm25s, Lucene's formula), combined with weights.

Each field (:mod:`koembed.lexical.fields`) is its own BM25 index with its own IDF and length normalisation, as
Elasticsearch scores a ``multi_match`` over several fields, rather than one bag of mixed terms: mixed into one
bag, rare bigrams get high IDF and drown the unigrams (measured in docs/BENCHMARKS.md). A passage's score is the
weighted sum of its per-field scores, each first put on a per-query scale (``normalization``, see
:func:`koembed.ranking.normalized`). With the single field ``unigram`` and weight 1 this is plain Kiwi BM25
(``bm25``). Only passages that share at least one term of a weighted field with the query are returned (a zero
score is no match, not a low rank); ties are broken by doc id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from koembed.errors import IndexStoreError, KoembedError, SpecError
from koembed.lexical.analyzer import (
    ANALYZERS,
    DEFAULT_ANALYZER,
    LEGACY_ANALYZER,
    Analyzer,
    UserDict,
    check_analyzer,
    get_analyzer,
)
from koembed.lexical.fields import FIELDS, MORPHEME_FIELDS, field_tokens
from koembed.progress import progress
from koembed.ranking import NORMALIZATIONS, Hit, best_rows, id_ranks, normalized

if TYPE_CHECKING:
    import numpy as np

K1, B = 1.2, 0.75  # Lucene's and Elasticsearch's defaults
# (field terms, field weights, k) -> (rows, scores) holding the k best, or None: score every passage
Candidates = Callable[[Mapping[str, Sequence[str]], Mapping[str, float], int], "tuple[np.ndarray, np.ndarray] | None"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


@dataclass(frozen=True)
class LexicalConfig:
    """Which fields BM25 scores and how they are combined: ``weights`` (field -> weight, > 0), the per-query
    ``normalization`` of each field's scores before the weighted sum, BM25's ``k1`` and ``b``, and the
    ``analyzer`` whose morphemes the fields are built on (:mod:`koembed.lexical.analyzer`)."""

    weights: Mapping[str, float] = field(default_factory=lambda: {"unigram": 1.0})
    normalization: str = "none"
    k1: float = K1
    b: float = B
    analyzer: str = DEFAULT_ANALYZER

    def __post_init__(self) -> None:
        unknown = [f for f in self.weights if f not in FIELDS]
        if unknown or not self.weights or any(not _number(w) or not 0 < w < math.inf for w in self.weights.values()):
            raise SpecError(f"lexical weights {dict(self.weights)!r}: give positive weights to fields among "
                            f"{', '.join(FIELDS)}")
        if self.normalization not in NORMALIZATIONS:
            raise SpecError(f"unknown normalization {self.normalization!r}: use {', '.join(NORMALIZATIONS)}")
        if not (_number(self.k1) and 0 <= self.k1 < math.inf) or not (_number(self.b) and 0 <= self.b <= 1):
            raise SpecError(f"BM25 k1={self.k1!r}, b={self.b!r}: k1 must be a finite number >= 0 and b within [0, 1]")
        if self.analyzer not in ANALYZERS:
            raise SpecError(f"unknown analyzer {self.analyzer!r}: use {', '.join(ANALYZERS)}")

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if f in self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"weights": {f: self.weights[f] for f in self.fields}, "normalization": self.normalization,
                "k1": self.k1, "b": self.b, "analyzer": self.analyzer}

    def with_analyzer(self, analyzer: str) -> LexicalConfig:
        return replace(self, analyzer=analyzer)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "the index manifest's bm25",
                  error: type[KoembedError] = IndexStoreError) -> LexicalConfig:
        """The config an index manifest records (a manifest written before fields existed is unigram BM25, one
        written before analyzers were recorded was analysed by Kiwi); keys other than these are the store's own.
        A missing or bad key is ``error`` naming it and ``where``."""
        if not isinstance(data, Mapping):
            raise error(f"{where}: expected a JSON object, not {data!r}")
        for key in ("k1", "b"):
            if key not in data:
                raise error(f"{where}: lacks '{key}'")
        weights = data.get("weights") or {"unigram": 1.0}
        if not isinstance(weights, Mapping):
            raise error(f"{where}: 'weights' must map fields to weights, not {weights!r}")
        try:
            return cls(weights=dict(weights), normalization=data.get("normalization", "none"), k1=data["k1"],
                       b=data["b"], analyzer=data.get("analyzer", LEGACY_ANALYZER))
        except SpecError as exc:
            raise error(f"{where}: {exc}") from None


# Fitted on development sets only (bench/lexical_fields.py, `koembed tune-lexical`; docs/BENCHMARKS.md): KorQuAD's
# 100 train-side articles and MS MARCO-ko's train half; raw sums of the fields' BM25 scores.
PHRASE = LexicalConfig({"unigram": 1.0, "bigram": 0.2, "pair": 0.3, "char": 0.5})
PRESETS = {"bm25": LexicalConfig(), "bm25-char": LexicalConfig({"char": 1.0}), "bm25-phrase": PHRASE}
DEFAULT_SPEC = "bm25-phrase"  # what indexes, koembed search and /search use: the best measured on every set
DEFAULT = PRESETS[DEFAULT_SPEC]
FIELDS_PREFIX = "bm25-fields:"


def lexical_config(spec: str, required: bool = False) -> LexicalConfig | None:
    """The lexical retriever a spec names, or None when ``spec`` is not lexical (a :class:`SpecError` if
    ``required``): a preset (``bm25-phrase``), or ``bm25-fields:unigram=1,char=0.5`` for explicit weights, then
    optional ``@`` parameters, comma-separated: a normalisation (``none``, ``max``, ``minmax``, ``z``; fields
    only) and an analyzer (``mecab``, ``kiwi``; default :data:`~koembed.lexical.analyzer.DEFAULT_ANALYZER`):
    ``bm25-phrase@kiwi``, ``bm25-fields:unigram=1,char=0.5@z,mecab``."""
    head, _, params = spec.partition("@")
    if head not in PRESETS and not head.startswith(FIELDS_PREFIX):
        if required:
            raise SpecError(f"{spec!r} is not a lexical retriever: use {', '.join(PRESETS)} or "
                            f"{FIELDS_PREFIX}FIELD=WEIGHT,..., with @ANALYZER ({', '.join(ANALYZERS)}) if wanted")
        return None
    options = [p.strip() for p in params.split(",")] if params.strip() else []
    analyzers = [p for p in options if p in ANALYZERS]
    normalizations = [p for p in options if p not in ANALYZERS]
    if len(analyzers) > 1 or len(normalizations) > 1 or (normalizations and head in PRESETS):
        allowed = "analyzer" if head in PRESETS else "normalization and analyzer"
        raise SpecError(f"{spec!r}: after @ give at most one {allowed}: analyzers {', '.join(ANALYZERS)}"
                        + ("" if head in PRESETS else f"; normalizations {', '.join(NORMALIZATIONS)}"))
    analyzer = analyzers[0] if analyzers else DEFAULT_ANALYZER
    if head in PRESETS:
        return PRESETS[head].with_analyzer(analyzer)
    weights = {}
    try:
        for item in head[len(FIELDS_PREFIX):].split(","):
            name, _, value = item.partition("=")
            weights[name.strip()] = float(value)
        return LexicalConfig(weights, normalizations[0] if normalizations else "none", analyzer=analyzer)
    except (ValueError, SpecError) as exc:
        raise SpecError(f"{spec!r}: expected {FIELDS_PREFIX}FIELD=WEIGHT,...[@none|max|minmax|z][,ANALYZER] with "
                        f"fields among {', '.join(FIELDS)} ({exc})") from None


def lexical_with_analyzer(spec: str, analyzer: str | None) -> LexicalConfig:
    """The lexical config of ``spec`` with ``analyzer`` when one is given (``--analyzer``); a spec naming another
    analyzer (``bm25-phrase@kiwi`` with ``--analyzer mecab``) is a :class:`SpecError`."""
    config = lexical_config(spec, required=True)
    assert config is not None  # required
    if analyzer is None:
        return config
    check_analyzer(analyzer)
    named = [p.strip() for p in spec.partition("@")[2].split(",") if p.strip() in ANALYZERS]
    if named and named[0] != analyzer:
        raise SpecError(f"{spec!r} names the {named[0]} analyzer but --analyzer is {analyzer}: give one")
    return config.with_analyzer(analyzer)


def lexical_spec(config: LexicalConfig) -> str:
    """The spec :func:`lexical_config` reads back as ``config``: a preset's name (``bm25-phrase``, with
    ``@kiwi`` when the analyzer is not the default) or the explicit ``bm25-fields:unigram=1.0,char=0.5@z`` form."""
    suffix = [] if config.analyzer == DEFAULT_ANALYZER else [config.analyzer]
    for name, preset in PRESETS.items():
        if preset.with_analyzer(config.analyzer) == config:
            return name + ("@" + ",".join(suffix) if suffix else "")
    weights = ",".join(f"{f}={config.weights[f]:g}" for f in config.fields)
    params = ([config.normalization] if config.normalization != "none" else []) + suffix
    return FIELDS_PREFIX + weights + ("@" + ",".join(params) if params else "")


class _FieldIndex:
    """One field's BM25 index (bm25s, Lucene variant) with its own vocabulary."""

    def __init__(self, docs: Sequence[Sequence[str]], k1: float, b: float):
        import bm25s

        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(term, len(vocab)) for term in doc] for doc in docs]
        self.vocab = vocab
        self.n = len(docs)
        self.bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """Each passage's BM25 score for the query ``terms`` (terms unseen in the corpus count 0)."""
        import numpy as np

        known = [self.vocab[t] for t in terms if t in self.vocab]
        return self.bm25.get_scores(known) if known else np.zeros(self.n, dtype=np.float32)


class BM25Retriever:
    """BM25 over the fields of ``config`` (default: content-morpheme unigrams, i.e. ``bm25``), analysed by
    ``config.analyzer`` with ``user_dict``'s words.

    ``keep_all_morphemes=True`` keeps every Kiwi morpheme's surface form (AutoRAG's ``ko_kiwi`` tokenizer), for
    comparison. Results are ordered by score, ties by ascending doc id, like every koembed retriever.
    """

    def __init__(self, config: LexicalConfig = LexicalConfig(), keep_all_morphemes: bool = False,
                 show_progress: bool = True, name: str = "bm25", user_dict: UserDict | None = None):
        self.name = name
        self.config = config
        self.user_dict = user_dict
        self._analyzer: Analyzer | None = None
        self._keep_all = keep_all_morphemes
        self.show_progress = show_progress
        self._indexes: dict[str, _FieldIndex] = {}
        self._doc_ids: Sequence[str] = []
        self._candidates: Candidates | None = None

    @property
    def tokenizer(self) -> Analyzer:
        """The analyzer, loaded on first use (a ``bm25-char`` retriever never loads one)."""
        if self._analyzer is None:
            if self._keep_all:
                from koembed.lexical.kiwi import KiwiTokenizer

                self._analyzer = KiwiTokenizer(keep_all=True, user_dict=self.user_dict)
            else:
                self._analyzer = get_analyzer(self.config.analyzer, self.user_dict)
        return self._analyzer

    @property
    def needs_analysis(self) -> bool:
        return bool(MORPHEME_FIELDS & set(self.config.fields))

    def analyse(self, texts: Sequence[str]) -> list[list[str]]:
        """Content morphemes of ``texts`` when a field needs them (else empty lists: no analyzer run)."""
        if not self.needs_analysis:
            return [[] for _ in texts]
        return self.tokenizer(texts, show_progress=self.show_progress)

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.fit_analysed(doc_ids, texts, self.analyse(texts))

    def fit_analysed(self, doc_ids: Sequence[str], texts: Sequence[str], tokens: Sequence[Sequence[str]]) -> None:
        """Index passages already analysed by this retriever's tokenizer (a stored index keeps the analysis)."""
        self.use_fields(doc_ids, {f: _FieldIndex([field_tokens(f, tok, text) for tok, text in zip(tokens, texts)],
                                                 self.config.k1, self.config.b) for f in self.config.fields})

    def use_fields(self, doc_ids: Sequence[str], indexes: Mapping[str, Any], ranks: np.ndarray | None = None,
                   candidates: Candidates | None = None) -> None:
        """Search ``doc_ids`` with field indexes built elsewhere (each field's ``scores(terms)``: one score per
        passage, in ``doc_ids`` order), e.g. an index's stored segments (:mod:`koembed.lexical.segments`).
        ``ranks``: :func:`koembed.ranking.id_ranks` of ``doc_ids`` when stored; ``doc_ids`` is then kept as given
        (a sequence that reads ids on demand stays so), else it is copied and ranked here. ``candidates``: a
        pruned top-k of the raw weighted sum (:meth:`koembed.lexical.segments.StoredFields.top_candidates`),
        used when the normalization is ``none``; the same hits as scoring every passage."""
        missing = [f for f in self.config.fields if f not in indexes]
        if missing:
            raise IndexStoreError(f"no stored BM25 field {', '.join(missing)}; rebuild the index")
        self._doc_ids = doc_ids if ranks is not None else list(doc_ids)
        self._rank = ranks if ranks is not None else id_ranks(self._doc_ids)
        self._indexes = {f: indexes[f] for f in self.config.fields}
        self._candidates = candidates if self.config.normalization == "none" else None

    def field_scores(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Per query, the raw BM25 scores of every passage (fit order) in each field: shape (fields, passages)."""
        import numpy as np

        if not self._indexes:
            raise SpecError(f"{self.name}: no passages indexed yet; call fit() before search()")
        out = []
        for query, tokens in zip(queries, self.analyse(queries)):
            out.append(np.stack([self._indexes[f].scores(field_tokens(f, tokens, query))
                                 for f in self.config.fields]))
        return out

    def combine(self, field_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(combined scores, matched): the weighted sum of the normalised field scores, and which passages share
        a term with the query in some field."""
        weights = [self.config.weights[f] for f in self.config.fields]
        combined = sum(w * normalized(s, self.config.normalization) for w, s in zip(weights, field_scores))
        return combined, (field_scores > 0).any(axis=0)

    @property
    def prunes(self) -> bool:
        """Whether :meth:`search` can prune (MaxScore over stored segments: given to :meth:`use_fields` with the
        normalization ``none``); otherwise every passage sharing a query term is scored."""
        return self._candidates is not None

    def search(self, queries: Sequence[str], k: int, *, prune: bool = True) -> list[list[Hit]]:
        """Top-k passages sharing at least one term with the query, as a search engine returns them: a query
        matching fewer than k passages gets fewer hits (none if no term matches).

        ``prune=False`` scores every passage even where the retriever :attr:`prunes`: the same hits and scores,
        slower; it exists so that benchmarks and checks can compare the two paths on one loaded index."""
        import numpy as np

        if not self._indexes:
            raise SpecError(f"{self.name}: no passages indexed yet; call fit() before search()")
        k = min(k, len(self._doc_ids))
        weights = {f: self.config.weights[f] for f in self.config.fields}
        results = []
        for query, tokens in progress(zip(queries, self.analyse(queries)), total=len(queries), desc="BM25",
                                      unit="query", disable=not self.show_progress):
            terms = {f: field_tokens(f, tokens, query) for f in self.config.fields}
            found = None
            if prune and self._candidates is not None and k > 0:
                found = self._candidates(terms, weights, k)
            if found is None:
                combined, matched = self.combine(np.stack([self._indexes[f].scores(terms[f]) for f in terms]))
                rows = matched.nonzero()[0]
                found = rows, combined[rows]
            rows, scores = found
            results.append([(self._doc_ids[rows[j]], float(scores[j]))
                            for j in best_rows(scores, self._rank, k, rows=rows)])
        return results

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs, the numbers :meth:`search` ranks by."""
        needed = sorted({q for q, _ in pairs})
        combined = {q: self.combine(s)[0] for q, s in zip(needed, self.field_scores([queries[q] for q in needed]))}
        return [float(combined[q][row]) for q, row in pairs]
