"""Query variants: a retrieval set's queries as people type them, with spacing changes and slips (issue 23).

Korean users often drop spaces (띄어쓰기) or slip on the keyboard; :func:`make_variants` derives, seeded and
deterministic, one variant of every query:

- ``nospace``: every whitespace removed (``서울 시청`` -> ``서울시청``).
- ``randspace``: the spaces removed, then as many put back at random places between characters.
- ``swap``: two adjacent characters (neither a space, not equal) swapped once.
- ``jamo``: one Hangul syllable's final consonant (받침) dropped, by Unicode syllable arithmetic (``각`` -> ``가``).
- ``keyboard``: one word typed with the IME in English mode on a 두벌식 keyboard (``가고`` -> ``rkrh``).

A query with nothing to change (no space for ``nospace``, no final consonant for ``jamo``...) stays as written.
Each query's randomness comes from ``(seed, kind, position)`` alone, so a query's variant does not depend on the
others, and any harness (``bench/peers.py``) can call :func:`make_variants` on the same queries and get the same
strings. Variants are for evaluation: nothing here feeds training data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from koembed.lexical.keyboard import HANGUL_FIRST, N_FINALS, dubeolsik_keys, is_syllable

KINDS = ("nospace", "randspace", "swap", "jamo", "keyboard")
__all__ = ["KINDS", "VARIANTS", "drop_final", "dubeolsik_keys", "is_syllable", "make_variants", "parse_variants",
           "variant_sets", "variants_table"]


def drop_final(char: str) -> str:
    """A precomposed Hangul syllable without its final consonant (``각`` -> ``가``); other characters unchanged."""
    if not is_syllable(char):
        return char
    code = ord(char) - HANGUL_FIRST
    return chr(ord(char) - code % N_FINALS)


def _nospace(query: str, rng: random.Random) -> str:
    return "".join(query.split())


def _randspace(query: str, rng: random.Random) -> str:
    bare = "".join(query.split())
    spaces = min(len(query.split()) - 1, len(bare) - 1)
    if spaces <= 0:
        return bare
    cuts = set(rng.sample(range(1, len(bare)), spaces))
    return "".join((" " if i in cuts else "") + c for i, c in enumerate(bare))


def _swap(query: str, rng: random.Random) -> str:
    places = [i for i in range(len(query) - 1)
              if not query[i].isspace() and not query[i + 1].isspace() and query[i] != query[i + 1]]
    if not places:
        return query
    i = rng.choice(places)
    return query[:i] + query[i + 1] + query[i] + query[i + 2:]


def _jamo(query: str, rng: random.Random) -> str:
    places = [i for i, c in enumerate(query) if drop_final(c) != c]
    if not places:
        return query
    i = rng.choice(places)
    return query[:i] + drop_final(query[i]) + query[i + 1:]


def _keyboard(query: str, rng: random.Random) -> str:
    words = query.split(" ")
    places = [i for i, w in enumerate(words) if any(is_syllable(c) for c in w)]
    if not places:
        return query
    i = rng.choice(places)
    words[i] = dubeolsik_keys(words[i])
    return " ".join(words)


VARIANTS: dict[str, Callable[[str, random.Random], str]] = {
    "nospace": _nospace, "randspace": _randspace, "swap": _swap, "jamo": _jamo, "keyboard": _keyboard}


def make_variants(queries: list[str], kind: str, seed: int) -> list[str]:
    """One ``kind`` variant of each query (see the module's list), seeded: the same queries, kind and seed give
    the same strings in any process. Raises ``ValueError`` for an unknown kind."""
    if kind not in VARIANTS:
        raise ValueError(f"unknown query variant {kind!r}: use {', '.join(KINDS)}")
    change = VARIANTS[kind]
    return [change(q, random.Random(f"{seed}:{kind}:{i}")) for i, q in enumerate(queries)]


def parse_variants(text: str) -> list[str]:
    """``nospace,swap`` -> ``["nospace", "swap"]``, checked; ``ValueError`` names an unknown kind."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in VARIANTS]
    if unknown or not kinds:
        raise ValueError(f"unknown query variant(s) {unknown or [text]}: use {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


def variant_sets(rs, kinds: Sequence[str], seed: int) -> list:
    """``rs`` with its queries replaced by each kind's variants (named ``NAME~KIND``); corpus and judgments the same."""
    from dataclasses import replace

    qids = rs.query_ids
    return [replace(rs, name=f"{rs.name}~{kind}",
                    queries=dict(zip(qids, make_variants([rs.queries[q] for q in qids], kind, seed))))
            for kind in kinds]


VARIANT_METRICS = ("accuracy@1", "ndcg@10")


def variants_table(results: dict[str, Sequence], metrics: Sequence[str] = VARIANT_METRICS) -> object:
    """One rich table: a row per retriever, a column per query form (``as written`` first, then each variant),
    each cell its ``metrics`` (IR suite) joined by `` / ``; ``results[form]`` is run_bench's list."""
    from rich.table import Table

    table = Table(title="Query variants: " + " / ".join(metrics))
    table.add_column("retriever", style="bold")
    for form in results:
        table.add_column(form, justify="right")
    first = next(iter(results.values()))
    for i, row in enumerate(first):
        table.add_row(row.retriever, *(" / ".join(f"{runs[i].ir[m]:.4f}" for m in metrics)
                                       for runs in results.values()))
    return table
