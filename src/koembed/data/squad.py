"""SQuAD / KorQuAD JSON as question -> paragraph retrieval, with a fixed split by article title."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from koembed.data._checks import id_field, load_json, require_judged, sha256_order, text_field
from koembed.data.retrieval_set import RetrievalSet
from koembed.errors import DataError

Split = Literal["all", "train", "test"]
DEFAULT_TRAIN_ARTICLES = 100


def looks_like_squad(path: Path) -> bool:
    return path.is_file() and path.suffix == ".json"


def split_titles(titles: list[str], n_train: int = DEFAULT_TRAIN_ARTICLES) -> tuple[set[str], set[str]]:
    """Deterministic article split: order titles by sha256 of the title, the first ``n_train`` train.

    Depends only on the titles themselves, not on file order, Python version or a random seed, so the
    same articles are held out on every machine. KorQuAD 1.0 dev: 140 articles -> 100 train, 40 test.
    """
    ordered = sha256_order(titles)
    return set(ordered[:n_train]), set(ordered[n_train:])


def _require_object(path: Path, row: int, field: str, value: object) -> None:
    if not isinstance(value, dict):
        raise DataError(path, f"expected a JSON object, got {type(value).__name__}", row=row, field=field)


def read_squad(path: str | Path, split: Split = "all", n_train: int = DEFAULT_TRAIN_ARTICLES,
               name: str | None = None) -> RetrievalSet:
    """Questions are queries; distinct paragraph texts are the corpus (doc id ``<title>#<n>``, n the
    paragraph's index in its article; a paragraph repeated verbatim keeps its first id). In errors,
    ``row`` is the 1-based article number in ``data``."""
    path = Path(path)
    if split not in ("all", "train", "test"):
        raise DataError(path, f"unknown split {split!r} for a SQuAD/KorQuAD file: use all, train or test",
                        field="split")
    data = load_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise DataError(path, "expected a top-level object with a 'data' list (SQuAD layout)", field="data")
    for a_idx, article in enumerate(articles, start=1):
        _require_object(path, a_idx, "data[]", article)
    titles = [text_field(path, a_idx, "data[].title", a.get("title")) for a_idx, a in enumerate(articles, start=1)]
    train, test = split_titles(titles, n_train)
    keep = {"all": set(titles), "train": train, "test": test}[split]

    corpus: dict[str, str] = {}
    doc_titles: dict[str, str] = {}
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    relevant: dict[str, list[list[str]]] = {}
    for a_idx, (article, title) in enumerate(zip(articles, titles), start=1):
        if title not in keep:
            continue
        for p_idx, paragraph in enumerate(article.get("paragraphs") or []):
            _require_object(path, a_idx, f"data[].paragraphs[{p_idx}]", paragraph)
            context = text_field(path, a_idx, f"data[].paragraphs[{p_idx}].context", paragraph.get("context"))
            if context not in by_text:
                doc_id = f"{title}#{p_idx}"
                if doc_id in corpus:  # two articles share a title: qualify by article number
                    doc_id = f"{title}#a{a_idx}-{p_idx}"
                by_text[context] = doc_id
                corpus[doc_id] = context
                doc_titles[doc_id] = title
            doc_id = by_text[context]
            for q_idx, qa in enumerate(paragraph.get("qas") or []):
                where = f"data[].paragraphs[{p_idx}].qas[{q_idx}]"
                _require_object(path, a_idx, where, qa)
                qid = id_field(path, a_idx, f"{where}.id", qa.get("id"))
                if qid in queries:
                    raise DataError(path, f"duplicate question id {qid!r}", row=a_idx, field=f"{where}.id")
                queries[qid] = text_field(path, a_idx, f"{where}.question", qa.get("question"))
                relevant[qid] = [[doc_id]]
    require_judged(path, relevant)
    default_name = f"{path.stem}" + ("" if split == "all" else f"-{split}")
    return RetrievalSet(name=name or default_name, queries=queries, corpus=corpus, relevant=relevant,
                        titles=doc_titles)
