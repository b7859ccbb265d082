"""Request bodies of the API, validated by pydantic: wrong types and unknown fields are 422s naming the field."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, StrictBool, StrictInt, StrictStr, field_validator

from koembed.data._checks import visible_text
from koembed.server.config import MAX_SEARCH_K


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Unknown fields are refused, as OpenAI refuses them (a typo is not silent)."""

    model_config = ConfigDict(extra="forbid")

    # Text, or token ids of the model's own tokenizer (as TEI, infinity and OpenAI take them): one list of
    # ids, or a list of such lists. Strings and id lists are not mixed in one request.
    input: str | list[str] | list[NonNegativeInt] | list[list[NonNegativeInt]]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None
    truncate: StrictBool | None = None  # koembed extension; None = the server's setting

    @field_validator("input", mode="before")
    @classmethod
    def _texts_or_ids(cls, value: Any) -> Any:
        """Clear messages for the usual mistakes instead of pydantic's per-union-member errors.

        Wrong types raise ValueError too: pydantic turns ValueError, not TypeError, into a validation error.
        """
        if isinstance(value, str):
            return _text(value, None)
        if not isinstance(value, list):
            raise ValueError(f"must be a string, a list of strings or token ids, not {_json_type(value)}")
        if not value:
            raise ValueError("must not be an empty list")
        if _is_id(value[0]):
            _check_ids(value, "input")
            return value
        if isinstance(value[0], list):
            for i, item in enumerate(value):
                if not isinstance(item, list):
                    raise ValueError(f"input[{i}] must be a list of token ids like input[0], not "
                                     f"{_json_type(item)}")
                _check_ids(item, f"input[{i}]")
            return value
        if isinstance(value[0], (int, float)) and not isinstance(value[0], bool):  # a number, not an integer
            raise ValueError(f"input[0] must be an integer token id (or input a list of strings), not "
                             f"{_json_type(value[0])} ({value[0]!r})")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] must be a string like input[0], not {_json_type(item)}")
            _text(item, f"input[{i}]")
        return value

    def token_ids(self) -> list[list[int]] | None:
        """The inputs as lists of token ids, or None when they are text."""
        if isinstance(self.input, str) or isinstance(self.input[0], str):
            return None
        if isinstance(self.input[0], int):
            return [list(cast("list[int]", self.input))]
        return [list(row) for row in cast("list[list[int]]", self.input)]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ids(ids: list[Any], where: str) -> None:
    """Non-empty, integers, not negative (the vocabulary's size is the app's check: it knows the model)."""
    if not ids:
        raise ValueError(f"{where} must not be an empty list of token ids")
    for j, token in enumerate(ids):
        if not _is_id(token):
            shown = f" ({token!r})" if isinstance(token, float) else ""
            raise ValueError(f"{where}[{j}] must be an integer token id, not {_json_type(token)}{shown}")
        if token < 0:
            raise ValueError(f"{where}[{j}] is {token}: token ids are not negative")


class _QueryText(BaseModel):
    """A request whose ``query`` must be valid Unicode with a visible character (checked before its type)."""

    @field_validator("query", mode="before", check_fields=False)
    @classmethod
    def _query_text(cls, value: Any) -> Any:
        return _text(value, None) if isinstance(value, str) else value  # other types: pydantic's type error


class SearchRequest(_QueryText):
    """A query on the loaded index; ``mode`` as :meth:`koembed.index.Index.search` takes it (None: the mode the
    index recorded, :func:`koembed.index.default_mode`); ``rerank``: rescore
    the top ``--rerank-depth`` hits with the server's reranker."""

    model_config = ConfigDict(extra="forbid")

    query: Annotated[StrictStr, Field(min_length=1)]
    k: Annotated[StrictInt, Field(ge=1, le=MAX_SEARCH_K)] = 10
    mode: Literal["dense", "bm25", "hybrid", "sparse", "colbert", "m3"] | None = None
    rerank: StrictBool = False
    highlight: StrictBool = False  # add each hit's spans of the query's Kiwi morphemes (the playground's view)


class RerankRequest(_QueryText):
    """The rerank request of TEI / Cohere / Jina: a query and the documents to order; ``top_n`` (default all)
    results, with their text when ``return_documents``. ``model`` is accepted and ignored, as in embeddings."""

    model_config = ConfigDict(extra="forbid")

    query: Annotated[StrictStr, Field(min_length=1)]
    documents: list[StrictStr]
    top_n: Annotated[StrictInt, Field(ge=1)] | None = None
    return_documents: StrictBool = False
    model: StrictStr | None = None
    truncate: StrictBool | None = None  # None = the server's setting

    @field_validator("documents")
    @classmethod
    def _documents_text(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must not be an empty list")
        for i, item in enumerate(value):
            _text(item, f"documents[{i}]")
        return value


def _text(text: str, where: str | None) -> str:
    """``text`` if it is valid Unicode with a visible character (as the data readers require of a text), else a
    ValueError naming ``where`` (None: the field itself, which the error response names): an empty or blank
    text has no meaning to embed or rank."""
    _unicode(text, where)
    if not visible_text(text):
        problem = "empty text (no visible character)"
        raise ValueError(f"{where} is an {problem}" if where else f"an {problem}")
    return text


def _unicode(text: str, where: str | None) -> str:
    """``text`` if it is valid Unicode: JSON's ``\\ud800`` escapes (and raw CESU bytes) give lone surrogates,
    which no tokenizer reads."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        problem = f"not valid Unicode text (a lone surrogate at character {exc.start})"
        raise ValueError(f"{where} is {problem}" if where else problem) from None
    return text


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list",
             str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)
