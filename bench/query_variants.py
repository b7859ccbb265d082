"""Query variants the peer harness (bench/peers.py) can run every system on: ``--query-variant NAME``.

A variant is a function ``str -> str`` applied to each query text before any system sees it (the judgments stay
the same), so every system answers exactly the same altered queries. Register a new one with :func:`variant`;
it must be deterministic (a variant that draws random edits seeds itself from the query text).
"""

from __future__ import annotations

from collections.abc import Callable

VARIANTS: dict[str, Callable[[str], str]] = {}


def variant(name: str) -> Callable[[Callable[[str], str]], Callable[[str], str]]:
    """Register ``function`` as the query variant ``name``."""

    def register(function: Callable[[str], str]) -> Callable[[str], str]:
        VARIANTS[name] = function
        return function

    return register


@variant("none")
def unchanged(query: str) -> str:
    """The query as the data set has it."""
    return query


@variant("no-space")
def without_spaces(query: str) -> str:
    """Every whitespace removed, as users type Korean queries on a phone ("전세보증금반환절차")."""
    return "".join(query.split())


def transform(name: str) -> Callable[[str], str]:
    """The variant called ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown query variant {name!r}: use one of {', '.join(sorted(VARIANTS))}")
    return VARIANTS[name]
