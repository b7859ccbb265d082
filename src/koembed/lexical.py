"""Korean lexical retrieval: Kiwi morphological analysis + BM25 (bm25s).

Why a morpheme filter: Korean attaches particles (을/를/은/는), endings (-습니다, -나요) and copulas to
content words, so whitespace tokens rarely match between a question and a passage ("보증금을" vs
"보증금은"). Kiwi splits them off; we then keep only morphemes that carry meaning:
- nouns (NNG, NNP), numerals (NR, SN), foreign words (SL, lower-cased), hanja (SH), roots (XR),
- verb and adjective stems (VV, VA, also Kiwi's irregular VV-I/VV-R...), adverbs (MAG),
- URLs, e-mails, hashtags, mentions (W_*),
and drop particles (J*), endings (E*), suffixes (XS*), bound nouns and pronouns (NNB, NP),
auxiliary verbs (VX), copulas (VCP/VCN), determiners (MM), punctuation and symbols. The dropped classes
are the same few hundred forms in every text: they carry no topic, and BM25 would otherwise score
"있/VA" or "하/XSV" matches. The choice is measured against keeping every morpheme in docs/BENCHMARKS.md.
Tokens keep a coarse class (``보증금/N``, ``돌려받/V``) so that homographs of different classes
(명사 "감" vs 동사 "감-") do not match.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from koembed.ranking import Hit, id_ranks, top_k

if TYPE_CHECKING:
    import numpy as np

KEEP_TAGS = ("NNG", "NNP", "NR", "SN", "SL", "SH", "XR", "VV", "VA", "MAG")


def _tag_class(tag: str) -> str | None:
    base = tag.split("-", 1)[0]
    if base.startswith("W_"):
        return "W"
    if base not in KEEP_TAGS:
        return None
    if base in ("VV", "VA"):
        return "V"
    if base in ("NNG", "NNP", "NR", "XR"):
        return "N"
    return base


@functools.cache
def _kiwi(num_workers: int):
    """One Kiwi per process and worker count: loading its model takes about two seconds."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=num_workers)


class KiwiTokenizer:
    """Text -> content morphemes, as described in the module docstring.

    ``keep_all=True`` keeps every morpheme's surface form (AutoRAG's ``ko_kiwi`` tokenizer), for comparison.
    ``num_workers=-1`` analyses on all cores (Kiwi needs at least one worker thread for batches).
    """

    def __init__(self, keep_all: bool = False, num_workers: int = -1):
        self.keep_all = keep_all
        self.kiwi = _kiwi(num_workers)

    def _tokens(self, analysed) -> list[str]:
        if self.keep_all:
            return [t.form.lower() for t in analysed]
        out = []
        for t in analysed:
            cls = _tag_class(t.tag)
            if cls is not None:
                out.append(f"{t.form.lower()}/{cls}")
        return out

    def __call__(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        from tqdm.auto import tqdm

        analysed = self.kiwi.tokenize(list(texts))
        return [self._tokens(a) for a in tqdm(analysed, total=len(texts), desc="Kiwi", disable=not show_progress,
                                              unit="text")]


class BM25Retriever:
    """BM25 over Kiwi morphemes. Lucene's scoring with Lucene/Elasticsearch defaults k1=1.2, b=0.75.

    Results are ordered by score, ties by ascending doc id, like every koembed retriever; only passages
    that share a term with the query are returned (a zero score is no match, not a low rank).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, keep_all_morphemes: bool = False,
                 show_progress: bool = True):
        self.name = "bm25"
        self.k1, self.b = k1, b
        self.tokenizer = KiwiTokenizer(keep_all=keep_all_morphemes)
        self.show_progress = show_progress
        self._bm25 = None
        self._vocab: dict[str, int] = {}
        self._doc_ids: list[str] = []

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.fit_tokens(doc_ids, self.tokenizer(texts, show_progress=self.show_progress))

    def fit_tokens(self, doc_ids: Sequence[str], tokens: Sequence[Sequence[str]]) -> None:
        """Index passages already analysed by this retriever's tokenizer (a persisted index stores them)."""
        import bm25s

        self._doc_ids = list(doc_ids)
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(tok, len(vocab)) for tok in doc] for doc in tokens]
        self._vocab = vocab
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        self._rank = id_ranks(self._doc_ids)

    def score_vectors(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Each query's BM25 score for every corpus passage (fit order); terms unseen in the corpus count 0."""
        import numpy as np

        if self._bm25 is None:
            raise RuntimeError("call fit() before search()")
        out = []
        for tokens in self.tokenizer(queries):
            known = [self._vocab[t] for t in tokens if t in self._vocab]
            out.append(self._bm25.get_scores(known) if known else np.zeros(len(self._doc_ids), dtype=np.float32))
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k passages sharing at least one term with the query, as a search engine returns them: a query
        matching fewer than k passages gets fewer hits (none if no term matches)."""
        from tqdm.auto import tqdm

        k = min(k, len(self._doc_ids))
        results = []
        for scores in tqdm(self.score_vectors(queries), desc="BM25", disable=not self.show_progress, unit="query"):
            results.append([(doc, score) for doc, score in top_k(scores, self._rank, self._doc_ids, k) if score > 0])
        return results

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """BM25 scores of (query position, corpus row) pairs, the numbers :meth:`search` ranks by."""
        needed = sorted({q for q, _ in pairs})
        vectors = dict(zip(needed, self.score_vectors([queries[q] for q in needed])))
        return [float(vectors[q][row]) for q, row in pairs]
