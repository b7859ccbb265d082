"""두벌식 (KS X 5002) keys and Hangul: a query typed with the input method in English mode (``rkrh`` for 가고).

Korean users switch the IME between Hangul and English; a word typed in the wrong mode arrives as Latin
letters no Korean passage holds. :func:`hangul_reading` reads such a word back as the Hangul a 두벌식 IME would
have composed, and :func:`with_hangul_readings` appends that reading to a query (the Latin word stays, so an
English term that happens to read as Hangul still matches as English). :func:`dubeolsik_keys` is the
opposite direction (koembed.evaluation.variants's ``keyboard`` variant).
"""

from __future__ import annotations

import re

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # 가 .. 힣: 19 initials x 21 medials x 28 finals (0: none)
N_MEDIALS, N_FINALS = 21, 28
# 두벌식 keys of each initial, medial and final jamo, in Unicode's syllable order.
INITIAL_KEYS = ("r", "R", "s", "e", "E", "f", "a", "q", "Q", "t", "T", "d", "w", "W", "c", "z", "x", "v", "g")
MEDIAL_KEYS = ("k", "o", "i", "O", "j", "p", "u", "P", "h", "hk", "ho", "hl", "y", "n", "nj", "np", "nl", "b",
               "m", "ml", "l")
FINAL_KEYS = ("", "r", "R", "rt", "s", "sw", "sg", "e", "f", "fr", "fa", "fq", "ft", "fx", "fv", "fg", "a", "q",
              "qt", "t", "T", "d", "w", "c", "z", "x", "v", "g")
_INITIAL = {k: i for i, k in enumerate(INITIAL_KEYS)}
_MEDIAL = {k: i for i, k in enumerate(MEDIAL_KEYS)}
_FINAL = {k: i for i, k in enumerate(FINAL_KEYS) if k}
_SHIFTED = set("QWERTOP")  # the keys whose shifted jamo differs (ㅃㅉㄸㄲㅆㅒㅖ); Shift on others types the same jamo
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")  # two-letter words (db, ep, th) are too often abbreviations


def is_syllable(char: str) -> bool:
    return HANGUL_FIRST <= ord(char) <= HANGUL_LAST


def dubeolsik_keys(text: str) -> str:
    """The keys a 두벌식 typist presses for ``text`` (``가고`` -> ``rkrh``, ``한국`` -> ``gksrnr``): what appears
    when the input method is in English mode. Characters other than Hangul syllables are kept."""
    out = []
    for char in text:
        if not is_syllable(char):
            out.append(char)
            continue
        code = ord(char) - HANGUL_FIRST
        initial, rest = divmod(code, N_MEDIALS * N_FINALS)
        medial, final = divmod(rest, N_FINALS)
        out.append(INITIAL_KEYS[initial] + MEDIAL_KEYS[medial] + FINAL_KEYS[final])
    return "".join(out)


def _longest(keys: str, i: int, table: dict[str, int]) -> list[tuple[str, int]]:
    """The entries of ``table`` that ``keys[i:]`` starts with, longest first."""
    return [(keys[i: i + n], table[keys[i: i + n]]) for n in (2, 1) if keys[i: i + n] in table]


def hangul_reading(word: str) -> str | None:
    """The Hangul syllables a 두벌식 IME composes from the keys ``word`` (``rkrh`` -> ``가고``, ``gksrnr`` ->
    ``한국``), or None when the keys do not compose whole syllables (a vowel with no initial, a consonant left
    over: most English words), or when it holds a capital a Korean typist would not shift (``DNA``: Shift only
    types ㄲㄸㅃㅆㅉㅒㅖ on QWERTOP), or is capitalised like an English word (``The``, ``World``: a capital
    then lower case only). Composition is the IME's: a consonant followed by a vowel starts the next syllable."""
    if not word.isascii() or not word.isalpha() or any(c.isupper() and c not in _SHIFTED for c in word):
        return None
    if len(word) > 1 and word[0].isupper() and word[1:].islower():
        return None
    keys = word
    out, i = [], 0
    while i < len(keys):
        if keys[i] not in _INITIAL:
            return None
        initial = _INITIAL[keys[i]]
        i += 1
        medials = _longest(keys, i, _MEDIAL)
        if not medials:
            return None
        key, medial = medials[0]
        i += len(key)
        final = 0
        for key, index in _longest(keys, i, _FINAL):
            if keys[i + len(key): i + len(key) + 1] not in _MEDIAL:  # a vowel next: the last consonant moves on
                final = index
                i += len(key)
                break
        out.append(chr(HANGUL_FIRST + (initial * N_MEDIALS + medial) * N_FINALS + final))
    return "".join(out)


def with_hangul_readings(query: str) -> str:
    """``query`` followed by the Hangul reading of each Latin word of three letters or more in it that reads as
    whole syllables (``서울 tlcjd 위치`` -> ``서울 tlcjd 위치 시청``); a query without such a word is returned
    unchanged. The word rules (three letters, no English capitalisation) were fitted on the development sets'
    as-written queries (docs/BENCHMARKS.md)."""
    readings = [r for w in _LATIN_WORD.findall(query) if (r := hangul_reading(w))]
    return " ".join([query, *readings]) if readings else query
