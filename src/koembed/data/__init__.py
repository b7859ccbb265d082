"""Readers and validators: every layout becomes one :class:`RetrievalSet`."""

from koembed.data.autorag import read_autorag
from koembed.data.beir import read_beir
from koembed.data.docs import load_documents, read_documents
from koembed.data.load import load_retrieval_set, sample_path
from koembed.data.msmarco import read_query_positives
from koembed.data.retrieval_set import RetrievalSet
from koembed.data.squad import read_squad, split_titles

__all__ = ["RetrievalSet", "load_documents", "load_retrieval_set", "read_documents", "read_autorag", "read_beir", "read_query_positives", "read_squad", "sample_path",
           "split_titles"]
