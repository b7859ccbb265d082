"""Encoding a corpus to disk: the sharded, resumable embedding store (:mod:`~koembed.encoding.shards`), the encode
job that fills it (:mod:`~koembed.encoding.job`), the bench's embedding cache (:mod:`~koembed.encoding.cache`), and
the Ray Data engine for a cluster (:mod:`~koembed.encoding.ray_engine`, imported on use: it needs ``ray``)."""

from koembed.encoding.cache import cached_corpus_embeddings
from koembed.encoding.job import EncodeReport, encode_corpus
from koembed.encoding.shards import embedding_chunks, parse_shard, read_embeddings

__all__ = ["EncodeReport", "cached_corpus_embeddings", "embedding_chunks", "encode_corpus", "parse_shard",
           "read_embeddings"]
