"""One entry point that recognises every retrieval-set layout koembed reads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from koembed.data.autorag import looks_like_autorag, read_autorag
from koembed.data.beir import looks_like_beir, read_beir
from koembed.data.msmarco import looks_like_query_positives, read_query_positives
from koembed.data.retrieval_set import RetrievalSet
from koembed.data.squad import looks_like_squad, read_squad
from koembed.errors import DataError

SAMPLE = "sample"


def sample_path() -> Path:
    """Folder of the bundled Korean sample (BEIR layout, text written by the koembed authors)."""
    return Path(str(resources.files("koembed.data") / "sample"))


def sample_texts() -> list[str]:
    """Every passage and query of the bundled sample: our own Korean text, for tokenizers and checks."""
    sample = load_retrieval_set()
    return list(sample.corpus.values()) + list(sample.queries.values())


def load_retrieval_set(path: str | Path | None = None, split: str | None = None) -> RetrievalSet:
    """Load a retrieval set, detecting its layout.

    - ``None`` or ``"sample"``: the bundled Korean sample.
    - a folder with ``qa.parquet`` + ``corpus.parquet``: AutoRAG.
    - a folder with ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``: BEIR/MTEB (split default ``test``).
    - a ``.json`` file holding a list: query-positives (the MS MARCO-ko layout; split ``all`` default, or
      ``train``/``test``: halves of the queries by SHA-256 of their ids, over the same corpus).
    - a ``.json`` file holding an object: SQuAD/KorQuAD (split ``all`` default, or ``train``/``test`` by article title).
    """
    if path is None or str(path) == SAMPLE:
        return read_beir(sample_path(), split="test", name="koembed-sample")
    path = Path(path)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if looks_like_autorag(path):
        return read_autorag(path)
    if looks_like_beir(path):
        return read_beir(path, split=split or "test")
    if looks_like_query_positives(path):
        return read_query_positives(path, split=split or "all")  # type: ignore[arg-type]  # reader refuses others
    if looks_like_squad(path):
        return read_squad(path, split=split or "all")  # type: ignore[arg-type]  # the reader refuses others
    raise DataError(
        path, "unrecognised retrieval set: expected an AutoRAG folder (qa.parquet, corpus.parquet), a BEIR folder "
        "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv), a SQuAD/KorQuAD .json file or a query-positives .json list")
