"""Kiwi morphological analysis: Korean text -> the content morphemes BM25 matches on.

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

from koembed.lexical.analyzer import Span, UserDict, matched_spans, token_class
from koembed.progress import progress


@functools.cache
def _kiwi(num_workers: int, user_dict: UserDict | None = None):
    """One Kiwi per process, worker count and user dictionary: loading its model takes about two seconds."""
    from kiwipiepy import Kiwi

    kiwi = Kiwi(num_workers=num_workers)
    for word, tag in user_dict.entries if user_dict is not None else ():
        kiwi.add_user_word(word, tag)
    return kiwi


class KiwiTokenizer:
    """Text -> content morphemes, as described in the module docstring; an
    :class:`~koembed.lexical.analyzer.Analyzer`. ``user_dict``: words Kiwi keeps whole (``Kiwi.add_user_word``).

    ``keep_all=True`` keeps every morpheme's surface form (AutoRAG's ``ko_kiwi`` tokenizer), for comparison.
    ``num_workers=-1`` analyses on all cores (Kiwi needs at least one worker thread for batches).
    """

    name = "kiwi"

    def __init__(self, keep_all: bool = False, num_workers: int = -1, user_dict: UserDict | None = None):
        self.keep_all = keep_all
        self.user_dict = user_dict
        self.kiwi = _kiwi(num_workers, user_dict)

    def _token(self, morpheme) -> str | None:
        """The token BM25 indexes for one Kiwi morpheme, or None when it is not kept."""
        if self.keep_all:
            return morpheme.form.lower()
        cls = token_class(morpheme.tag)
        return None if cls is None else f"{morpheme.form.lower()}/{cls}"

    def _tokens(self, analysed) -> list[str]:
        return [token for token in map(self._token, analysed) if token is not None]

    def positioned(self, texts: Sequence[str]) -> list[list[Span]]:
        """Each text's tokens (as :meth:`__call__` returns them) with their ``[start, end)`` character span in the
        text (Python string indices, i.e. Unicode code points). A morpheme Kiwi restores from a contracted or
        irregular form ("돌려받/V" in "돌려받아", "하/V" in "해") spans the surface characters it came from, so
        spans of neighbouring morphemes may overlap."""
        spans = []
        for analysed in self.kiwi.tokenize(list(texts)):
            spans.append([(token, m.start, m.end) for m in analysed if (token := self._token(m)) is not None])
        return spans

    def matched_spans(self, query: str, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """:func:`koembed.lexical.analyzer.matched_spans` with this analyzer."""
        return matched_spans(self, query, texts)

    def __call__(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        # one text (a query): analysed in this thread, without the worker pool's hand-off (~0.2 ms of ~0.4)
        analysed = [self.kiwi.tokenize(texts[0])] if len(texts) == 1 else self.kiwi.tokenize(list(texts))
        return [self._tokens(a) for a in progress(analysed, total=len(texts), desc="Kiwi", unit="text",
                                                  disable=not show_progress)]


def respaced(texts: Sequence[str], num_workers: int = -1, reset: bool = True) -> list[str]:
    """Each text with Kiwi's spacing (띄어쓰기). ``reset``: every space removed, then Kiwi's put back
    (``Kiwi.space(reset_whitespace=True)``): a query typed with its spaces, without any or with spaces in odd places
    maps to one string, so a model that reads the result cannot tell them apart (spaces between two Latin-letter or
    digit runs stay: Kiwi does not join "New York"). Without ``reset`` the typed spaces stay and Kiwi only adds the
    ones it finds missing: a text typed without spaces gets Kiwi's, a well-spaced one stays nearly as typed."""
    if not texts:
        return []
    return list(_kiwi(num_workers).space(list(texts), reset_whitespace=reset))


def morpheme_texts(texts: Sequence[str], num_workers: int = -1) -> list[str]:
    """Each text as its Kiwi morphemes (every one, particles and endings included) joined by single spaces, after
    :func:`respaced` (Kiwi's analysis of a text depends on its spaces; of the respaced text, it does not):
    ``서울시청은어디에있나요?`` -> ``서울 시청 은 어디 에 있 나요 ?``."""
    if not texts:
        return []
    analysed = _kiwi(num_workers).tokenize(respaced(texts, num_workers))
    return [" ".join(m.form for m in tokens) for tokens in analysed]
