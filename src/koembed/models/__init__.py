"""Embedding models: what to run (:mod:`.spec`), where its files are (:mod:`.locate`), how it runs (:mod:`.precision`),
loading (:mod:`.loading`), encoding (:mod:`.embed`), the ONNX backends (:mod:`.onnx`, :mod:`.export`) and tiny test
models (:mod:`.testing`).

The names below are the public surface; import from the submodules for the rest.
"""

from koembed.models.embed import encode, length_limit, token_lengths
from koembed.models.loading import BGE_M3, build_model, load_model
from koembed.models.locate import MODEL_ALIASES, model_identity, resolve_model
from koembed.models.precision import expected_precision, model_precision, resolve, resolve_precision
from koembed.models.spec import BACKENDS, EXACT, PRECISIONS, EncodeOptions, Encoder, ModelSpec, RunSettings

__all__ = ["BACKENDS", "BGE_M3", "EXACT", "MODEL_ALIASES", "PRECISIONS", "EncodeOptions", "Encoder", "ModelSpec",
           "RunSettings", "build_model", "encode", "expected_precision", "length_limit", "load_model",
           "model_identity", "model_precision", "resolve", "resolve_model", "resolve_precision", "token_lengths"]
