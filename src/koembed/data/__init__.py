"""Readers and validators: every layout becomes one :class:`RetrievalSet`; passages and pairs are checked
row by row, and every problem names the file, row and field."""

from koembed.data.autorag import read_autorag
from koembed.data.beir import read_beir
from koembed.data.docs import load_documents, read_documents, validate_documents
from koembed.data.load import load_retrieval_set, sample_path, sample_texts
from koembed.data.msmarco import read_query_positives
from koembed.data.pairs import Pair, pairs_from_retrieval_set, read_pairs, write_pairs
from koembed.data.retrieval_set import RetrievalSet
from koembed.data.squad import read_squad, split_titles
from koembed.data.sts import nli_pairs, read_nli, read_sts, sts_pairs

__all__ = ["Pair", "RetrievalSet", "load_documents", "load_retrieval_set", "nli_pairs", "pairs_from_retrieval_set",
           "read_autorag", "read_beir", "read_documents", "read_nli", "read_pairs", "read_query_positives",
           "read_squad", "read_sts", "sample_path", "sample_texts", "split_titles", "sts_pairs", "validate_documents",
           "write_pairs"]
