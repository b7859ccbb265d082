"""두벌식 keys read back as Hangul (koembed.lexical.keyboard): hand-checked words, the inverse of
dubeolsik_keys on random syllable strings, and English words left alone."""

from __future__ import annotations

import random

import pytest

from koembed.lexical.keyboard import dubeolsik_keys, hangul_reading, with_hangul_readings


@pytest.mark.parametrize("keys, hangul", [("rkrh", "가고"), ("gksrnr", "한국"), ("dkssudgktpdy", "안녕하세요"),
                                          ("dlfrek", "읽다"), ("rkqtdl", "값이"), ("rkTek", "갔다"), ("Tkf", None), ("dho", "왜"),
                                          ("qnpfr", "뷁"), ("tlcjd", "시청"), ("rkrtk", "각사")])
def test_readings_by_hand(keys, hangul):  # "Tkf" (쌀) is capitalised like English: no reading
    assert hangul_reading(keys) == hangul


@pytest.mark.parametrize("word", ["hello", "iphone", "DNA", "Google", "The", "World", "KTX", "k", "rr", "gks1", "한국"])
def test_words_that_do_not_compose_whole_syllables_have_no_reading(word):
    assert hangul_reading(word) is None


def test_reading_inverts_the_keys_on_random_syllables():
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(chr(rng.randint(0xAC00, 0xD7A3)) for _ in range(rng.randint(1, 5)))
        keys = dubeolsik_keys(text)
        english_capitals = keys[0].isupper() and keys[1:].islower()  # "Whlq" (쬡): read as English, by rule
        assert hangul_reading(keys) == (None if english_capitals else text)


def test_query_gets_readings_appended_and_keeps_its_words():
    assert with_hangul_readings("서울 tlcjd 위치") == "서울 tlcjd 위치 시청"
    assert with_hangul_readings("rkrh 한국 gksrnr?") == "rkrh 한국 gksrnr? 가고 한국"
    assert with_hangul_readings("DNA 구조 db") == "DNA 구조 db"  # no reading; two letters: never read
