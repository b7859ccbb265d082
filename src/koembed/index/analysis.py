"""An index's analysis: the analyzer and user dictionary its lexical half was built with, for every store.

The manifest's ``bm25`` record names the analyzer (``analyzer``; absent in an index written before analyzers
were recorded: Kiwi) and, when the build had one, the user dictionary (``user_dict``: file name, sha256, entry
count). The dictionary itself is copied into the index folder at build (:data:`USER_DICT_FILE`) and never
changed: every later add, search and serve analyses with that copy, checked against the recorded sha256, so a
query is analysed exactly as the stored passages were. Asking for another analyzer or another dictionary is
refused, naming both: a token of one analysis never matches the other's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError, KoembedError, SpecError
from koembed.files import atomic_open
from koembed.lexical import Analyzer, LexicalConfig, UserDict, get_analyzer
from koembed.lexical.analyzer import USER_DICT_FILE, analyzer_record

REMEDY = "rebuild the index"


def bm25_analysis(config: LexicalConfig, user_dict: UserDict | None) -> dict[str, Any]:
    """What a manifest's ``bm25`` record says of the analysis, beside ``config``'s fields and weights."""
    return {"tokenizer": f"{config.analyzer} content morphemes (koembed.lexical.analyzer)", **config.to_dict(),
            **analyzer_record(config.analyzer, user_dict)}


def write_user_dict(index_dir: Path, user_dict: UserDict | None) -> None:
    """Copy ``user_dict`` into a new index folder (before its first manifest is written)."""
    if user_dict is not None:
        with atomic_open(index_dir / USER_DICT_FILE) as f:
            f.write(user_dict.text)


def recorded_user_dict(index_dir: Path, bm25: Mapping[str, Any]) -> UserDict | None:
    """The index's copy of its user dictionary, checked against the manifest's sha256 (None: built without)."""
    record = bm25.get("user_dict")
    if record is None:
        return None
    if not isinstance(record, Mapping) or record.get("file") != USER_DICT_FILE or not isinstance(
            record.get("sha256"), str):
        raise IndexStoreError(f"{index_dir}: the manifest's bm25.user_dict is not {{\"file\": \"{USER_DICT_FILE}\", "
                              f"\"sha256\": ...}}; {REMEDY}")
    path = index_dir / USER_DICT_FILE
    if path.is_symlink() or not path.is_file():
        raise IndexStoreError(f"{path}: the index's user dictionary is missing; {REMEDY}")
    try:
        user_dict = UserDict.read(path)
    except KoembedError as exc:
        raise IndexStoreError(f"{exc}; {REMEDY}") from None
    if user_dict.sha256 != record["sha256"]:
        raise IndexStoreError(f"{path}: sha256 {user_dict.sha256[:12]}... is not the manifest's "
                              f"{record['sha256'][:12]}...: the user dictionary was changed after the build; {REMEDY}")
    return user_dict


def check_analysis(index_dir: Path, bm25: Mapping[str, Any], analyzer: str | None = None,
                   user_dict: UserDict | None = None) -> None:
    """Refuse an ``analyzer`` or ``user_dict`` a command asked for that is not the index's (None: not asked)."""
    built_with = LexicalConfig.from_dict(bm25).analyzer
    if analyzer is not None and analyzer != built_with:
        raise SpecError(f"{index_dir} was built with the {built_with} analyzer, not {analyzer}: its passages' "
                        f"tokens are {built_with}'s, so it is searched with {built_with} (leave --analyzer out, or "
                        f"rebuild with --analyzer {analyzer})")
    if user_dict is not None:
        record = bm25.get("user_dict")
        ours = record.get("sha256") if isinstance(record, Mapping) else None
        if ours != user_dict.sha256:
            had = f"its own (sha256 {str(ours)[:12]}...)" if ours else "none"
            raise SpecError(f"{index_dir}: the user dictionary given (sha256 {user_dict.sha256[:12]}...) is not the "
                            f"one the index was built with ({had}): the index uses its copy ({USER_DICT_FILE}); "
                            "leave --user-dict out, or rebuild with the new dictionary")


def index_analyzer(index_dir: Path, bm25: Mapping[str, Any]) -> Analyzer:
    """The analyzer (with the index's user dictionary) that analyses text for this index."""
    return get_analyzer(LexicalConfig.from_dict(bm25).analyzer, recorded_user_dict(index_dir, bm25))

