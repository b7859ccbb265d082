"""Embed texts with a loaded model: bounded memory, length-sorted batches, an optional token budget per batch."""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from koembed.models.spec import EncodeOptions, Encoder
from koembed.models.static import static_module, static_texts
from koembed.progress import progress

if TYPE_CHECKING:
    import numpy as np


_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_SHARED_LOCK = threading.RLock()  # for a model object that cannot be weakly referenced


def model_lock(model: Any) -> threading.RLock:
    """The lock every koembed call on ``model`` holds (:func:`serialized`), so threads sharing one model object take
    turns: a call changes the model for its duration (``max_seq_length``, a static tokenizer's truncation) and
    Hugging Face fast tokenizers raise "Already borrowed" when used from two threads at once. Re-entrant."""
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = threading.RLock()
        except TypeError:
            return _SHARED_LOCK
    return lock


def serialized(model_of: Callable[[Any], Any] = lambda model: model) -> Callable[[Callable], Callable]:
    """Decorator: the call holds :func:`model_lock` of its model (``model_of(first argument)``). The lock costs
    nothing measurable unless two threads use one model at once (the server's index thread and its batches)."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def locked(first: Any, *args: Any, **kwargs: Any) -> Any:
            with model_lock(model_of(first)):
                return fn(first, *args, **kwargs)
        return locked
    return decorate


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None off glibc (macOS, Windows, musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS. glibc keeps the pages every encode batch frees, fragmented between
    live objects: over a 1M-passage corpus that grew to about 0.5 GB of RSS (measured); trimming once per chunk
    costs under 1% of encode time."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def token_budget_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group positions into batches, longest first, so that (batch size x longest length) <= the budget.

    A padded batch costs its size times its longest text, so a budget in tokens keeps every batch about
    equally expensive: many short texts together, few long ones (a single text longer than the budget is
    a batch of its own). Returns lists of positions into ``lengths``.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@contextlib.contextmanager
def truncated(model: Encoder, max_seq_length: int | None) -> Iterator[None]:
    """The model truncates its inputs at ``max_seq_length`` tokens inside the block (None: as it is), and is put
    back as it was after. A static model has no length limit of its own (sentence-transformers reports infinity
    and cannot set one): its tokenizer truncates instead."""
    static = static_module(model)
    if static is not None:
        tokenizer = static.tokenizer
        previous = tokenizer.truncation
        if max_seq_length is not None and math.isfinite(max_seq_length):
            tokenizer.enable_truncation(int(max_seq_length))
        try:
            yield
        finally:
            if previous is None:
                tokenizer.no_truncation()
            else:
                tokenizer.enable_truncation(**previous)
        return
    previous_length = model.max_seq_length
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    try:
        yield
    finally:
        if max_seq_length is not None:
            model.max_seq_length = previous_length


def length_limit(model: Encoder) -> int | None:
    """The most tokens the model reads of a text, or None where there is no limit (a static model)."""
    limit = getattr(model, "max_seq_length", None)
    return None if limit is None or not math.isfinite(limit) else int(limit)


def token_lengths(model: Encoder, texts: Sequence[str]) -> list[int]:
    """Tokens per text as the model reads them, after its truncation (a static model adds no special tokens; one that
    respaces its texts is counted on the respaced text)."""
    static = static_module(model)
    if static is not None:
        return [len(e.ids) for e in static.tokenizer.encode_batch(static_texts(model, texts), add_special_tokens=False)]
    return [len(ids) for ids in model.tokenizer(list(texts), truncation=True,
                                                 max_length=model.max_seq_length)["input_ids"]]


@serialized()
def encode(model: Encoder, texts: Sequence[str], options: EncodeOptions | None = None, *,
           max_seq_length: int | None = None, **settings: Any) -> np.ndarray:
    """Embed ``texts`` as a float32 array (n, dim), in input order.

    ``options`` (or its fields as keywords, e.g. ``batch_size=64, show_progress=False``) say how to batch.
    Texts are ordered by length (longest first, so a too-large batch fails at once), encoded by
    sentence-transformers ``chunk_size`` at a time, and each chunk is copied into one preallocated
    array: peak memory is the output plus one chunk, whatever n is. ``max_seq_length`` overrides the
    model's truncation length for this call only. ``max_batch_tokens`` replaces the fixed ``batch_size`` by a
    token budget per batch (:func:`token_budget_batches`; lengths from the model's tokenizer after
    truncation): the way to encode 8192-token passages without running out of memory, and short ones in
    large batches. A static model (a table lookup: no activations to bound) is run a whole chunk per forward pass
    whatever ``batch_size`` says: 1.6x faster than batches of 32 on KorQuAD paragraphs (docs/BENCHMARKS.md). A
    bf16/fp16 model's output is converted to float32 here (sentence-transformers returns float32 for bf16, but
    float16 for fp16). ``options.prompt`` is put before every text, as
    sentence-transformers' ``encode(prompt=...)`` does (:mod:`koembed.models.prompts` picks it).
    """
    import numpy as np

    opts = replace(options or EncodeOptions(), **settings)
    prompt = {"prompt": opts.prompt} if opts.prompt else {}  # sentence-transformers prepends it
    texts = list(texts)
    out: np.ndarray | None = None
    static = static_module(model) is not None
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")  # longest first; an array, not n Python ints

    def run(idx: list[int], size: int) -> None:
        nonlocal out
        emb = model.encode([texts[i] for i in idx], batch_size=size, show_progress_bar=False, convert_to_numpy=True,
                           **prompt)
        if out is None:
            out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        out[idx] = np.asarray(emb, dtype=np.float32)

    with truncated(model, max_seq_length), progress(total=len(texts), desc="Encoding", unit="text",
                                                  disable=not opts.show_progress) as bar:
        for start in range(0, len(order), opts.chunk_size):
            idx = order[start: start + opts.chunk_size].tolist()
            if opts.max_batch_tokens is None:
                run(idx, len(idx) if static else opts.batch_size)
                bar.update(len(idx))
                release_freed_memory()
                continue
            lengths = token_lengths(model, [(opts.prompt or "") + texts[i] for i in idx])
            for batch in token_budget_batches(lengths, opts.max_batch_tokens):
                run([idx[j] for j in batch], len(batch))
                bar.update(len(batch))
            release_freed_memory()
    if out is None:  # no texts
        out = np.empty((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    return out
