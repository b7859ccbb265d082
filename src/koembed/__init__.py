"""koembed: Korean text embeddings for retrieval (RAG)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("koembed")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["__version__"]
