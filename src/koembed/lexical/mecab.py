"""MeCab-ko analysis (the ``python-mecab-ko`` wheel with its bundled mecab-ko-dic): Korean text -> the same
content-morpheme tokens as Kiwi's (:mod:`koembed.lexical.analyzer`).

mecab-ko-dic tags with the Sejong tag set that Kiwi uses, so the kept classes are the same (nouns, numerals,
foreign words, hanja, roots, verb and adjective stems, adverbs); its unit bound nouns (``NNBC``) are dropped like
other bound nouns. An inflected or compound entry (``못했`` = ``못하/VX+았/EP``, ``보증금`` = ``보증/NNG+금/NNG``)
is split by its expression feature into the morphemes it is made of, as nori splits compounds by default
(``DecompoundMode.DISCARD``), so that a compound matches its parts. A part of a compound spans the characters it
covers when the parts spell the surface, else the whole surface.

A user dictionary is compiled into a MeCab user dictionary (``mecab-dict-index`` with mecab-ko-dic's model, which
assigns connection ids and costs) once per process, in a temporary folder.

Batches of :data:`POOL_MIN` texts or more are analysed by one process per core (MeCab holds the GIL while it
parses, so threads would not help); smaller batches and single queries in the calling thread.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from koembed.errors import SpecError
from koembed.lexical.analyzer import Span, UserDict, matched_spans, token_class
from koembed.progress import progress

INSTALL = "pip install python-mecab-ko==1.3.7 python-mecab-ko-dic==2.1.1.post2"
POOL_MIN = 4000  # texts: below this a process pool costs more than it saves on 2 cores
CHUNK = 512  # texts per task of the pool
SPLIT_TYPES = ("Inflect", "Compound", "Preanalysis")


def _modules() -> tuple[Any, Any]:
    try:
        import _mecab
        import mecab_ko_dic
    except ImportError:
        raise SpecError(f"the mecab analyzer needs MeCab-ko, which is not installed: {INSTALL} "
                        "(or use --analyzer kiwi)") from None
    return _mecab, mecab_ko_dic


def _user_dic_file(user_dict: UserDict, dicdir: str) -> str:
    """``user_dict`` compiled by mecab-dict-index into a temporary ``.dic`` (removed at exit)."""
    from mecab.__main__ import mecab_dict_index

    folder = Path(tempfile.mkdtemp(prefix="koembed-mecab-"))
    atexit.register(shutil.rmtree, folder, True)
    rows = []
    for word, tag in user_dict.entries:
        last = word[-1]
        final = "T" if "가" <= last <= "힣" and (ord(last) - 0xAC00) % 28 else "F"
        rows.append(f"{word},,,,{tag},*,{final},{word},*,*,*,*\n")
    (folder / "user.csv").write_text("".join(rows), encoding="utf-8")
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:  # mecab-dict-index prints its progress from C
        os.dup2(null, 1)
        os.dup2(null, 2)
        code = mecab_dict_index(["-d", dicdir, "-u", str(folder / "user.dic"), "-f", "utf-8", "-t", "utf-8",
                                 str(folder / "user.csv")])
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
    if code != 0:
        raise SpecError(f"MeCab-ko could not compile the user dictionary (mecab-dict-index exit {code})")
    return str(folder / "user.dic")


class MecabTokenizer:
    """Text -> content morphemes by MeCab-ko (see the module docstring); an :class:`~koembed.lexical.analyzer.Analyzer`.

    The tagger is built with the binding's ``_mecab.Tagger`` directly (as ``mecab.MeCab`` builds it): its nodes
    are read as they are, without ``mecab.MeCab.parse``'s per-morpheme objects, which doubled the analysis time."""

    name = "mecab"

    def __init__(self, user_dict: UserDict | None = None):
        _mecab, dic = _modules()
        from mecab.mecab import mecabrc_path

        self.user_dict = user_dict
        self._mecab = _mecab
        options = ["--rcfile", str(mecabrc_path), "--dicdir", str(dic.dictionary_path)]
        if user_dict is not None and user_dict.entries:
            options += ["--userdic", _user_dic_file(user_dict, str(dic.dictionary_path))]
        self._tagger = _mecab.Tagger(options)

    def _nodes(self, text: str) -> Iterator[tuple[tuple[int, int], str, str]]:
        lattice = self._mecab.Lattice()
        lattice.add_request_type(self._mecab.MECAB_ALLOCATE_SENTENCE)
        lattice.set_sentence(text)
        if not self._tagger.parse(lattice):
            raise SpecError(f"MeCab-ko could not analyse a text: {self._tagger.what()}")
        for span, node in lattice:
            yield span, node.surface, node.feature

    def _analyse(self, text: str) -> list[Span]:
        out: list[Span] = []
        for (start, end), surface, feature in self._nodes(text):
            tag, _, _, _, kind, _, _, expression = feature.split(",", 7)
            if kind in SPLIT_TYPES and expression != "*":
                parts = [p.rsplit("/", 2) for p in expression.split("+")]
                if all(len(p) == 3 and p[0] for p in parts):
                    spelled = "".join(p[0] for p in parts) == surface
                    at = start
                    for form, part_tag, _ in parts:
                        cls = token_class(part_tag)
                        stop = at + len(form) if spelled else end
                        if cls is not None:
                            out.append((f"{form.lower()}/{cls}", at if spelled else start, stop))
                        at = stop if spelled else at
                    continue
            cls = token_class(tag)
            if cls is not None and surface:
                out.append((f"{surface.lower()}/{cls}", start, end))
        return out

    def positioned(self, texts: Sequence[str]) -> list[list[Span]]:
        """Each text's tokens with their ``[start, end)`` character spans."""
        return [self._analyse(text) for text in texts]

    def matched_spans(self, query: str, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """:func:`koembed.lexical.analyzer.matched_spans` with this analyzer."""
        return matched_spans(self, query, texts)

    def __call__(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        texts = list(texts)
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if len(texts) < POOL_MIN or workers < 2:
            canonical: dict[str, str] = {}
            return [[canonical.setdefault(token, token) for token, _, _ in self._analyse(text)]
                    for text in progress(texts, desc="MeCab-ko", unit="text", disable=not show_progress)]
        return _pooled(texts, self.user_dict, workers, show_progress)


def _pooled(texts: list[str], user_dict: UserDict | None, workers: int, show_progress: bool) -> list[list[str]]:
    """Analyse ``texts`` with ``workers`` forked processes. Forked, not spawned: a spawned (or forkserver) worker
    imports the caller's main module again, which breaks every script without an ``if __name__ == "__main__"``
    guard; a forked one only runs MeCab, which takes no lock another thread of the parent could hold.

    Each chunk comes back as its distinct tokens and, per text, their positions in that list: every token string
    then exists once in this process (a corpus repeats a few hundred thousand tokens tens of millions of times;
    unpickled one by one they were most of a 1M-passage build's memory)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = [texts[i: i + CHUNK] for i in range(0, len(texts), CHUNK)]
    out: list[list[str]] = []
    canonical: dict[str, str] = {}
    context = multiprocessing.get_context("fork")
    with (ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(user_dict,)) as pool,
          progress(total=len(texts), desc="MeCab-ko", unit="text", disable=not show_progress) as bar):
        for vocab, docs in pool.map(_work, chunks):
            shared = [canonical.setdefault(token, token) for token in vocab]
            out.extend([shared[i] for i in doc] for doc in docs)
            bar.update(len(docs))
    return out


_WORKER: MecabTokenizer | None = None


def _start_worker(user_dict: UserDict | None) -> None:
    global _WORKER  # noqa: PLW0603 - the pool's initializer sets this worker process's tokenizer
    _WORKER = MecabTokenizer(user_dict)


def _work(texts: list[str]) -> tuple[list[str], list[list[int]]]:
    """One chunk's tokens as (distinct tokens, each text's token positions in them)."""
    assert _WORKER is not None
    vocab: dict[str, int] = {}
    docs = [[vocab.setdefault(token, len(vocab)) for token, _, _ in _WORKER._analyse(text)] for text in texts]
    return list(vocab), docs
