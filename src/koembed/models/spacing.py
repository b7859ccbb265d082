"""Spacing-robust static models: Kiwi's spacing before the static tokenizer (issue 23).

A static model's word pieces are cut at whitespace, so a query typed without spaces (``서울시청은어디에있나요``)
becomes pieces the model never saw in training; on KorQuAD the bundled ``static-ko`` fell from 0.60 to 0.23
accuracy@1. :class:`SpacedStaticEmbedding` is sentence-transformers' ``StaticEmbedding`` with one step before its
tokenizer, named by ``spacing`` and saved in the folder (``koembed_spacing.json``, and the class in
``modules.json``), so that training, ``koembed encode`` / ``index`` / ``serve`` / ``bench`` and the Python API all
read the same text:

- ``kiwi``: :func:`koembed.lexical.kiwi.respaced`: every space removed and Kiwi's put back; as written, without
  spaces and with random spaces, a query maps to the same string.
- ``kiwi-morph``: :func:`koembed.lexical.kiwi.morpheme_texts`: the respaced text's morphemes, one word each (particles
  and endings split off the content words they are attached to).

``none`` is the plain ``StaticEmbedding`` (folders saved before this option: nothing changes for them). Which one
the bundled model uses is measured in docs/BENCHMARKS.md. Kiwi is far slower than the table lookup it precedes; a
bounded cache of respaced texts keeps training (the same texts every epoch) fast.

Loading such a folder with plain sentence-transformers needs ``trust_remote_code=True`` (the class is koembed's,
imported from the installed package); :func:`koembed.models.load_model` loads it without.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.sentence_transformer.modules import StaticEmbedding

from koembed.errors import ModelLoadError
from koembed.lexical.kiwi import morpheme_texts, respaced
from koembed.models.static import SPACED_TYPE

SPACINGS = ("none", "kiwi", "kiwi-keep", "kiwi-morph")
CACHE_SIZE = 100_000  # respaced texts kept: a static training's texts (about 12,000 for static-ko) fit many times


def respace(texts: Sequence[str], spacing: str) -> list[str]:
    """``texts`` as a static model with ``spacing`` reads them (see the module docstring); an unknown name is a
    :class:`ModelLoadError` naming the choices."""
    if spacing == "none":
        return list(texts)
    if spacing == "kiwi":
        return respaced(texts)
    if spacing == "kiwi-keep":
        return respaced(texts, reset=False)
    if spacing == "kiwi-morph":
        return morpheme_texts(texts)
    raise ModelLoadError(f"unknown spacing {spacing!r}: use {', '.join(SPACINGS)}")


class SpacedStaticEmbedding(StaticEmbedding):
    """``StaticEmbedding`` whose texts are respaced (``spacing``: ``kiwi`` or ``kiwi-morph``) before tokenizing, in
    ``encode`` and in training alike (both call :meth:`preprocess`). Saved with its ``spacing`` in
    ``koembed_spacing.json`` beside the tokenizer and vectors."""

    config_file_name = "koembed_spacing.json"
    config_keys = ["spacing"]  # noqa: RUF012 - sentence-transformers' class attribute, set as its modules do

    def __init__(self, tokenizer: Any, embedding_weights: Any = None, embedding_dim: int | None = None,
                 spacing: str = "kiwi", **kwargs: Any) -> None:
        if spacing not in SPACINGS or spacing == "none":
            raise ModelLoadError(f"{type(self).__name__}: spacing {spacing!r} is not one of kiwi, kiwi-keep, kiwi-morph "
                                 "(a model without spacing is a plain StaticEmbedding)")
        super().__init__(tokenizer, embedding_weights=embedding_weights, embedding_dim=embedding_dim, **kwargs)
        self.spacing = spacing

    def respace(self, texts: Sequence[str]) -> list[str]:
        """The texts as this model tokenizes them (:func:`cached_respace`)."""
        return cached_respace(texts, self.spacing)

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        if prompt:
            inputs = self._prepend_prompt(inputs, prompt)
        return super().preprocess(self.respace(inputs), **kwargs)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        super().save(output_path, *args, safe_serialization=safe_serialization, **kwargs)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> SpacedStaticEmbedding:
        """The tokenizer and vectors as ``StaticEmbedding`` loads them, the spacing from ``koembed_spacing.json``
        (a folder without it is refused: which spacing its vectors were trained with is unknown)."""
        hub: dict[str, Any] = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder,
                               "revision": revision, "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path, **hub)
        if "spacing" not in config:
            raise ModelLoadError(f"{model_name_or_path}: modules.json names {SPACED_TYPE} but "
                                 f"{cls.config_file_name} (its spacing) is missing; restore it")
        plain = StaticEmbedding.load(model_name_or_path, **hub)
        return cls(plain.tokenizer, embedding_weights=plain.embedding.weight.data, spacing=config["spacing"])


_CACHE: dict[tuple[str, str], str] = {}


def cached_respace(texts: Sequence[str], spacing: str) -> list[str]:
    """:func:`respace`, each distinct text once, repeated ones from a process-wide cache shared by every model
    with that spacing (a training reads the same texts every epoch; a benchmark encodes one corpus with a model and
    its untrained baseline). The cache holds :data:`CACHE_SIZE` texts and is cleared when full."""
    missing = list(dict.fromkeys(t for t in texts if (spacing, t) not in _CACHE))
    if missing:
        if len(_CACHE) + len(missing) > CACHE_SIZE:
            _CACHE.clear()
        _CACHE.update(((spacing, t), spaced) for t, spaced in zip(missing, respace(missing, spacing)))
    return [_CACHE[spacing, t] for t in texts]


def spacing_of(module: Any) -> str:
    """The spacing a static module applies: its ``spacing``, ``none`` for a plain ``StaticEmbedding``."""
    return getattr(module, "spacing", "none")
