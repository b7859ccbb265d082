"""Korean analyzers behind one protocol: text -> the content-morpheme tokens that BM25's fields are built on.

Two analyzers give the same token kinds (``보증금/N``, ``돌려받/V``, ``ai/SL``, ``2024/SN``; :func:`token_class`, why
these classes: :mod:`koembed.lexical.kiwi`), so every field, weight and phrase pair works unchanged whichever analysed
the text:

- ``mecab``: MeCab-ko with mecab-ko-dic (the ``python-mecab-ko`` wheel; :mod:`koembed.lexical.mecab`): starts in
  tens of milliseconds and analyses about three times as fast as Kiwi; the default, being within 0.005
  accuracy@1 of Kiwi or ahead on the held-out sets in every query form measured (docs/BENCHMARKS.md, "Korean
  analysis v2");
- ``kiwi``: Kiwi (kiwipiepy; :mod:`koembed.lexical.kiwi`): two seconds to start; what every index built before
  the analyzer was recorded used, so such an index reads as ``kiwi``.

An index records its analyzer (and user dictionary) at build and every later add, search and serve uses it: a
token stored by one analyzer never matches a query analysed by the other. Which analyzer a lexical retriever uses
is part of its :class:`koembed.lexical.bm25.LexicalConfig` (spec suffix ``@mecab`` / ``@kiwi``).

A user dictionary (:class:`UserDict`, ``--user-dict FILE``) adds words the analyzer should keep whole: one entry
a line, the word and an optional tag (``NNP``, a proper noun, by default; ``NNG`` a common noun), as nori's
``user_dictionary`` and Kiwi's user words; ``#`` starts a comment.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from koembed.errors import DataError, SpecError

ANALYZERS = ("mecab", "kiwi")
DEFAULT_ANALYZER = "mecab"
LEGACY_ANALYZER = "kiwi"  # an index or bm25 record written before analyzers were recorded
USER_TAGS = ("NNP", "NNG")  # what a user dictionary entry may be tagged: both kept as ``form/N``
USER_DICT_FILE = "user_dict.txt"  # an index's copy of its user dictionary
MAX_USER_DICT_BYTES = 16 * 2**20

Span = tuple[str, int, int]
# The morpheme classes BM25 keeps (Sejong tags, which Kiwi and mecab-ko-dic share), and the class a token carries:
KEEP_TAGS = ("NNG", "NNP", "NR", "SN", "SL", "SH", "XR", "VV", "VA", "MAG")


def token_class(tag: str) -> str | None:
    """The class a kept morpheme's token carries (``N`` nouns, numerals and roots, ``V`` verb and adjective stems,
    else the tag: ``SL``, ``SN``, ``SH``, ``MAG``; ``W`` for Kiwi's URLs, e-mails, hashtags and mentions), or None
    for a morpheme BM25 drops. Kiwi's irregular-verb tags (``VV-I``) count as their base tag."""
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


@dataclass(frozen=True)
class UserDict:
    """A parsed user dictionary: ``entries`` ``(word, tag)`` in file order, ``text`` as read (what an index copies)
    and its ``sha256`` (what an index records and later commands compare)."""

    entries: tuple[tuple[str, str], ...]
    text: str
    sha256: str

    @classmethod
    def parse(cls, text: str, where: str = "user dictionary") -> UserDict:
        """Entries of ``text``; a malformed line is a :class:`DataError` naming ``where`` and the line."""
        entries: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            body = line.split("#", 1)[0].strip()
            if not body:
                continue
            parts = body.split()
            if len(parts) > 2:
                raise DataError(where, f"{line.strip()!r}: expected a word and an optional tag "
                                f"({' or '.join(USER_TAGS)}), not {len(parts)} fields", row=number)
            word, tag = parts[0], parts[1] if len(parts) == 2 else USER_TAGS[0]
            if tag not in USER_TAGS:
                raise DataError(where, f"unknown tag {tag!r}: use {' or '.join(USER_TAGS)}", row=number)
            if "," in word or '"' in word or not any(ch.isalnum() for ch in word) or not word.isprintable():
                raise DataError(where, f"{word!r} is not a word: letters or digits without commas, quotes or "
                                "control characters", row=number)
            if word in seen:
                raise DataError(where, f"{word!r} is listed again (first on line {seen[word]})", row=number)
            seen[word] = number
            entries.append((word, tag))
        return cls(tuple(entries), text, hashlib.sha256(text.encode("utf-8")).hexdigest())

    @classmethod
    def read(cls, path: str | Path) -> UserDict:
        """The user dictionary in ``path`` (UTF-8): a missing, oversized or non-UTF-8 file or a malformed line is a
        :class:`DataError` naming it."""
        path = Path(path)
        try:
            if path.stat().st_size > MAX_USER_DICT_BYTES:
                raise DataError(path, f"larger than {MAX_USER_DICT_BYTES >> 20} MiB: not a user dictionary")
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(path, f"cannot read the user dictionary: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (byte {exc.start})") from None
        return cls.parse(text, str(path))

    def record(self) -> dict[str, object]:
        """What an index's manifest records of it (the file itself is :data:`USER_DICT_FILE` beside it)."""
        return {"file": USER_DICT_FILE, "sha256": self.sha256, "entries": len(self.entries)}


class Analyzer(Protocol):
    """Text -> content-morpheme tokens (``form/CLASS``); every analyzer gives the same token kinds.

    ``__call__`` analyses many texts (with a progress bar if asked); one text (a query) is analysed in the calling
    thread. ``positioned`` adds each token's ``[start, end)`` character span (a morpheme restored from a
    contracted or compound form spans the surface it came from, so spans may overlap)."""

    name: str
    user_dict: UserDict | None

    def __call__(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]: ...

    def positioned(self, texts: Sequence[str]) -> list[list[Span]]: ...

    def matched_spans(self, query: str, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...


def matched_spans(analyzer: Analyzer, query: str, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Where each text holds a token of ``query``: sorted, non-overlapping ``[start, end)`` character spans
    (overlapping or touching spans merged), for highlighting the morphemes a lexical match rests on."""
    query_tokens = {token for token, _, _ in analyzer.positioned([query])[0]}
    out = []
    for spans in analyzer.positioned(texts):
        merged: list[tuple[int, int]] = []
        for start, end in sorted((s, e) for token, s, e in spans if token in query_tokens):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        out.append(merged)
    return out


def check_analyzer(name: str) -> str:
    """``name`` if it is an analyzer koembed has, else a :class:`SpecError` listing the choices."""
    if name not in ANALYZERS:
        raise SpecError(f"unknown analyzer {name!r}: use {', '.join(ANALYZERS)}")
    return name


def get_analyzer(name: str = DEFAULT_ANALYZER, user_dict: UserDict | None = None) -> Analyzer:
    """The analyzer ``name`` with ``user_dict``'s words, one per process and dictionary (loading one costs from
    tens of milliseconds (MeCab-ko) to two seconds (Kiwi)). Unknown names are a :class:`SpecError`; MeCab-ko not
    installed is a :class:`SpecError` with the command that installs it."""
    return _cached(check_analyzer(name), user_dict)


@functools.cache
def _cached(name: str, user_dict: UserDict | None) -> Analyzer:
    if name == "kiwi":
        from koembed.lexical.kiwi import KiwiTokenizer

        return KiwiTokenizer(user_dict=user_dict)
    from koembed.lexical.mecab import MecabTokenizer

    return MecabTokenizer(user_dict=user_dict)


def analyzer_version(name: str) -> str:
    """The installed libraries ``name`` analyses with, as an index records them (read without loading them)."""
    from importlib.metadata import PackageNotFoundError, version

    packages = ("kiwipiepy",) if check_analyzer(name) == "kiwi" else ("python-mecab-ko", "python-mecab-ko-dic")
    try:
        return ", ".join(f"{p} {version(p)}" for p in packages)
    except PackageNotFoundError:
        get_analyzer(name)  # says how to install it
        raise


def analyzer_record(name: str, user_dict: UserDict | None) -> dict[str, object]:
    """The bm25 record's description of the analysis (name, library versions, user dictionary)."""
    record: dict[str, object] = {"analyzer": name, "analyzer_version": analyzer_version(name)}
    if user_dict is not None:
        record["user_dict"] = user_dict.record()
    return record
