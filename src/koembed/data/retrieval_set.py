"""The one in-memory retrieval set every reader returns and every retriever and metric consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RetrievalSet:
    """Queries, a corpus and relevance judgments.

    ``relevant`` follows AutoRAG's ``retrieval_gt``: for each query a list of groups, each a list
    of doc ids; retrieving any id of a group satisfies that group. Formats with flat judgments
    (BEIR qrels, KorQuAD) give every relevant doc its own group. Only queries with at least one
    relevant doc are kept, as sentence-transformers' InformationRetrievalEvaluator does.
    """

    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, list[list[str]]]
    titles: dict[str, str] = field(default_factory=dict)

    @property
    def query_ids(self) -> list[str]:
        """Ids of the evaluated queries, in file order."""
        return list(self.queries)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def relevant_ids(self, qid: str) -> set[str]:
        """All doc ids relevant to ``qid`` (the union of its groups), for the IR suite."""
        return {doc for group in self.relevant[qid] for doc in group}

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "queries": len(self.queries), "corpus": len(self.corpus)}

    def stats(self) -> dict[str, float]:
        """Sizes and text lengths (characters) that ``koembed inspect`` prints."""
        import statistics

        doc_lengths = [len(t) for t in self.corpus.values()]
        query_lengths = [len(t) for t in self.queries.values()]
        groups = [len(g) for g in self.relevant.values()]
        return {"queries": len(self.queries), "query_chars_mean": statistics.mean(query_lengths),
                "passages": len(self.corpus), "passage_chars_mean": statistics.mean(doc_lengths),
                "passage_chars_max": max(doc_lengths), "groups_mean": statistics.mean(groups),
                "groups_max": max(groups)}
