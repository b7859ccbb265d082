"""Corpus embeddings cached per model, precision and corpus in the embedding store: a bench encodes each corpus once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from koembed.encoding.job import encode_corpus
from koembed.encoding.shards import corpus_fingerprint, read_embeddings
from koembed.models import (
    EncodeOptions,
    Encoder,
    ModelSpec,
    model_precision,
)
from koembed.models.prompts import model_prompts

if TYPE_CHECKING:
    import numpy as np


def cached_corpus_embeddings(model_name: str, encoder: Encoder, doc_ids: Sequence[str], texts: Sequence[str],
                             cache_dir: str | Path, options: EncodeOptions = EncodeOptions()) -> np.ndarray:
    """The corpus embeddings of ``encoder`` (loaded from ``model_name``) from ``cache_dir``, encoding (resumably)
    whatever is not there yet.

    One folder per model name, precision and corpus fingerprint, so comparing models on one corpus, or rerunning
    a bench, encodes each corpus once; a run killed while encoding continues from its last finished chunk.
    """
    prompt = model_prompts(encoder).passage
    key = "-".join([re.sub(r"[^0-9A-Za-z._-]+", "_", model_name).strip("_"), model_precision(encoder),
                    corpus_fingerprint(doc_ids, texts)[:16]])
    if prompt:
        key += "-p" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    folder = Path(cache_dir) / key
    encode_corpus(ModelSpec(model_name, passage_prompt=prompt), doc_ids, texts, folder, encoder=encoder,
                  options=options)
    vectors, _ = read_embeddings([folder], doc_ids, texts, model_name)
    return vectors
