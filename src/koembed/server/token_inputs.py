"""Token-id inputs of ``/v1/embeddings``: checked against the model's vocabulary and the same token limit as text.

The request schema has checked the shape (lists of non-negative integers, none empty); what needs the model is
here: an id the model has no row for is a 422 naming it (``input[2][5]``), an input longer than
``max_input_tokens`` a 413, or, with ``truncate``, its first ``max_input_tokens`` ids (cut as they are: no
special token is added back, as TEI cuts ids).
"""

from __future__ import annotations

from koembed.errors import SpecError
from koembed.models import Encoder
from koembed.models.token_ids import vocabulary_size
from koembed.server.errors import ApiError


def checked_token_ids(rows: list[list[int]], vocabulary: int | None, max_tokens: int, single: bool,
                      truncate: bool) -> tuple[list[list[int]], list[int]]:
    """``(rows, token counts)`` to queue: refused with :class:`ApiError` when an id is out of ``0 ..
    vocabulary-1`` (422; ``vocabulary`` None: the model takes no ids) or a row is too long (413 unless
    ``truncate``, which cuts it). ``single``: the request sent one flat list (named ``input[j]``)."""
    if vocabulary is None:
        raise ApiError(422, "input: this model does not take token ids (only transformer, static and ONNX models "
                            "do): send the texts as strings", param="input", code="invalid_value")
    for i, row in enumerate(rows):
        where = "input" if single else f"input[{i}]"
        bad = next((j for j, token in enumerate(row) if token >= vocabulary), None)
        if bad is not None:
            raise ApiError(422, f"{where}[{bad}] is {row[bad]}, not a token id of this model (its vocabulary "
                                f"has ids 0 to {vocabulary - 1}): send ids of the model's own tokenizer",
                           param="input", code="invalid_value")
        if len(row) > max_tokens and not truncate:
            raise ApiError(413, f"{where} has {len(row)} tokens, more than the limit of {max_tokens} "
                                f"(max_input_tokens): shorten it, or send \"truncate\": true to embed its first "
                                f"{max_tokens} ids", param="input", code="input_too_long")
    rows = [row[:max_tokens] for row in rows]
    return rows, [len(row) for row in rows]


def token_vocabulary(model: Encoder) -> int | None:
    """The number of token ids ``model`` reads, or None where it takes no token ids (then they are a 422)."""
    try:
        return vocabulary_size(model)
    except SpecError:
        return None
