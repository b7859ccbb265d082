"""Token counts of request texts, exactly as the model reads them (special tokens included where it adds them)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

from koembed.models import Encoder
from koembed.models.static import static_module, static_texts


class TokenCounter:
    """Counts the model tokenizer's tokens per text, special tokens included, without truncation.

    It works on its own copy of the tokenizer: the model's tokenizer is reconfigured (truncation length)
    by every :func:`encode` call on the encoding thread, and Hugging Face fast tokenizers raise "Already
    borrowed" when one is reconfigured and used from two threads at once.
    """

    def __init__(self, model: Encoder):
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("the model has no tokenizer to count tokens with")
        from tokenizers import Tokenizer

        backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        self._lock = threading.Lock()
        self._special = static_module(model) is None  # a static model reads no special tokens
        self._model = model  # a static model that respaces its texts counts the respaced ones (static_texts)
        if backend is not None:  # a fast tokenizer: a Rust copy, safe to share between threads read-only
            self._fast: Tokenizer | None = Tokenizer.from_str(backend.to_str())
            self._fast.no_truncation()
            self._fast.no_padding()
            self._slow: Any = None  # a slow (Python) tokenizer, its type the model's
        else:
            self._fast = None
            self._slow = copy.deepcopy(tokenizer)

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if self._fast is not None:  # encode_batch_fast skips the character offsets we do not need
            batch = getattr(self._fast, "encode_batch_fast", self._fast.encode_batch)
            texts = list(texts) if self._special else static_texts(self._model, texts)
            return [len(e.ids) for e in batch(texts, add_special_tokens=self._special)]
        with self._lock:
            ids = self._slow(list(texts), add_special_tokens=True, truncation=False, padding=False,
                             verbose=False)["input_ids"]
        return [len(i) for i in ids]
