"""Errors a user can act on. The CLI turns them into a message and exit code 2.

Every error koembed raises for bad input or a damaged file is one of these; anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path


class KoembedError(Exception):
    """Base class: the message is meant for the user, not a traceback."""


class DataError(KoembedError):
    """A retrieval set or training file is malformed.

    The message names the file, the 1-based row (line for text files) and the field, so the
    user can go straight to the problem.
    """

    def __init__(self, path: str | Path, message: str, *, row: int | None = None, field: str | None = None):
        self.path = str(path)
        self.row = row
        self.field = field
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ModelLoadError(KoembedError):
    """A model could not be loaded (missing path, hub unreachable, checksum mismatch)."""


class SpecError(KoembedError):
    """A retriever spec such as ``hybrid:bm25+dense:minilm`` could not be parsed."""


class ConfigError(KoembedError):
    """The training config file or a ``--set`` override is invalid; the message names the key."""


class TrainingDivergedError(KoembedError):
    """Training produced non-finite weights; nothing was saved as final, the last good checkpoint is kept."""


class ServeError(KoembedError):
    """The server cannot start as asked (for example exposed beyond this machine without an API key)."""


class EmbeddingStoreError(KoembedError):
    """Stored embeddings are missing, incomplete, damaged, or do not belong to this corpus or model."""


class IndexStoreError(KoembedError):
    """The index folder is missing, damaged, or cannot take the requested change."""


class ModelMismatchError(IndexStoreError):
    """The model given is not the one the index was built with (other dimension or other embeddings)."""


class DocumentIdError(IndexStoreError):
    """Adding an id the index already holds, or deleting one it does not hold."""


class MtebError(KoembedError):
    """An MTEB task cannot be run: unknown or not a retrieval task, or its data neither local nor reachable."""
