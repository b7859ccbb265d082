"""Query and passage prompts (instructions): the text put before every query and every passage.

Models such as e5 and KoE5 (``"query: "`` / ``"passage: "``) or Qwen3-Embedding (an instruction before queries
only) were trained with prompts and lose quality without them. sentence-transformers keeps them in the model's
``config_sentence_transformers.json`` (``prompts``) and prepends one when ``encode(..., prompt=...)`` is given it;
koembed reads them from the loaded model and applies them in every command:

- queries get the ``query`` prompt;
- passages get the first *non-empty* prompt among ``document``, ``passage``, ``corpus``. (sentence-transformers
  6.2's own ``encode_document`` takes the first such *key*, and every loaded model has an empty ``document``
  key, so it never uses an e5 model's ``passage`` prompt; koembed does.)

:class:`~koembed.models.spec.ModelSpec` ``query_prompt`` / ``passage_prompt`` override them (``""``: none);
:func:`koembed.models.load_model` writes the override into the loaded model, so everything downstream asks the
model (:func:`model_prompts`) and the prompts travel with it into indexes, benches and model cards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from koembed.models.spec import EncodeOptions, Encoder

Role = Literal["query", "passage"]
QUERY_PROMPT_NAME = "query"
PASSAGE_PROMPT_NAMES = ("document", "passage", "corpus")  # sentence-transformers' encode_document order


@dataclass(frozen=True)
class Prompts:
    """The resolved prompt texts of one model (``""``: none)."""

    query: str = ""
    passage: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    def for_role(self, role: Role) -> str:
        return self.query if role == "query" else self.passage


def model_prompts(model: Any) -> Prompts:
    """The prompts ``model`` (an :class:`Encoder` or a CrossEncoder) applies to queries and passages."""
    prompts = getattr(model, "prompts", None) or {}
    passage = next((prompts[name] for name in PASSAGE_PROMPT_NAMES if prompts.get(name)), "")
    return Prompts(query=prompts.get(QUERY_PROMPT_NAME) or "", passage=passage or "")


def apply_prompt_overrides(model: Encoder, query_prompt: str | None, passage_prompt: str | None) -> None:
    """Write query / passage prompt overrides (a ModelSpec's, or a training config's; None keeps the model's own)
    into the loaded model's ``prompts``."""
    if query_prompt is None and passage_prompt is None:
        return
    prompts = getattr(model, "prompts", None)
    if prompts is None:
        prompts = {}
        model.prompts = prompts  # type: ignore[attr-defined]  # Encoder declares no prompts; both encoders take them
    if query_prompt is not None:
        prompts[QUERY_PROMPT_NAME] = query_prompt
    if passage_prompt is not None:
        for name in PASSAGE_PROMPT_NAMES[1:]:
            prompts.pop(name, None)
        prompts[PASSAGE_PROMPT_NAMES[0]] = passage_prompt


def role_options(options: EncodeOptions, model: Any, role: Role) -> EncodeOptions:
    """``options`` with the model's prompt for ``role`` (queries or passages) set."""
    return replace(options, prompt=model_prompts(model).for_role(role) or None)
