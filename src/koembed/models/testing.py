"""Tiny models with the real classes, for tests and benchmarks: the bge-m3 code path in seconds.

Public on purpose, and shipped in the package: the benchmarks in ``bench/`` (bge-m3-size random models, the tiny
XLM-R) and users' own CI need models that exercise the real loading, pooling and M3 code without the hub; the
module imports nothing beyond what ``koembed.models`` already needs, and nothing imports it at start-up."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koembed.data import sample_texts
from koembed.models.loading import build_model
from koembed.models.m3 import COLBERT_HEAD, SPARSE_HEAD


def make_tiny_xlmr(out_dir: str | Path, texts: Sequence[str] | None = None, vocab_size: int = 800,
                   hidden_size: int = 32, layers: int = 2, seed: int = 0, initializer_range: float = 0.5,
                   max_length: int = 128, unigram_vocab: Sequence[tuple[str, float]] | None = None) -> Path:
    """Save a tiny, randomly initialised XLM-RoBERTa + CLS pooling + Normalize model to ``out_dir``.

    Same classes as ``BAAI/bge-m3`` (XLMRobertaModel, a SentencePiece-style Unigram tokenizer with
    XLM-R's special tokens), toy sizes, so tests run the bge-m3 code path in seconds. The tokenizer is
    trained on ``texts`` (default: the bundled Korean sample). Deterministic for a given ``seed``.
    ``initializer_range`` is far above XLM-R's 0.02: at 0.02 a tiny random encoder maps every text to nearly
    the same vector (cosine 1.0 to four decimals), which would leave rankings to tie order. ``max_length`` is
    the longest input in tokens (XLM-R's position table has two more rows). Training the tokenizer is not
    deterministic across processes (piece ids and scores vary slightly); ``unigram_vocab`` (``[(piece, score)]``,
    the five special tokens first, as :func:`unigram_vocab` returns it) rebuilds a saved one exactly instead.
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        encoder_dir = _tiny_encoder(Path(scratch) / "encoder", texts, vocab_size, hidden_size, layers, seed,
                                    initializer_range, max_length, unigram_vocab)
        model = build_model(str(encoder_dir), pooling="cls", normalize=True, max_seq_length=max_length,
                            device="cpu")
        model.save(str(out_dir))
    return out_dir


def make_tiny_m3(out_dir: str | Path, seed: int = 0, **tiny: Any) -> Path:
    """:func:`make_tiny_xlmr` saved in bge-m3's layout: plus ``sparse_linear.pt`` (hidden -> 1) and
    ``colbert_linear.pt`` (hidden -> hidden), randomly initialised (torch's Linear init, seeded)."""
    import torch

    out_dir = make_tiny_xlmr(out_dir, seed=seed, **tiny)
    hidden = int(tiny.get("hidden_size", 32))
    torch.manual_seed(seed + 1)
    torch.save(torch.nn.Linear(hidden, 1).state_dict(), out_dir / SPARSE_HEAD)
    torch.save(torch.nn.Linear(hidden, hidden).state_dict(), out_dir / COLBERT_HEAD)
    return out_dir


def make_tiny_cross_encoder(out_dir: str | Path, seed: int = 0, **tiny: Any) -> Path:
    """A tiny XLM-RoBERTa cross-encoder (XLMRobertaForSequenceClassification, one output score) saved as
    sentence-transformers' ``CrossEncoder``; the classifier head is randomly initialised (seeded)."""
    import torch
    from sentence_transformers import CrossEncoder

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        encoder_dir = _tiny_encoder(Path(scratch) / "encoder", seed=seed, **tiny)
        torch.manual_seed(seed)
        model = CrossEncoder(str(encoder_dir), num_labels=1, device="cpu")
        model.save(str(out_dir))
    return out_dir


def _tiny_encoder(encoder_dir: Path, texts: Sequence[str] | None = None, vocab_size: int = 800,
                  hidden_size: int = 32, layers: int = 2, seed: int = 0, initializer_range: float = 0.5,
                  max_length: int = 128, unigram_vocab: Sequence[tuple[str, float]] | None = None) -> Path:
    """A tiny XLMRobertaModel and its tokenizer saved as a plain Hugging Face folder (see make_tiny_xlmr)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    if texts is None:
        texts = sample_texts()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    if unigram_vocab is not None:
        tok = Tokenizer(models.Unigram([(piece, float(score)) for piece, score in unigram_vocab],
                                       unk_id=specials.index("<unk>")))
    else:
        tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    if unigram_vocab is None:
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>",
                                          show_progress=False)
        tok.train_from_iterator(list(texts), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=max_length)
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=hidden_size * 2,
                              max_position_embeddings=max_length + 2, pad_token_id=fast.pad_token_id,
                              bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                              initializer_range=initializer_range)
    XLMRobertaModel(config).save_pretrained(encoder_dir)
    fast.save_pretrained(encoder_dir)
    return encoder_dir


def unigram_vocab(model_dir: str | Path) -> list[tuple[str, float]]:
    """The ``[(piece, score)]`` of a tiny model's Unigram tokenizer, in id order (see :func:`make_tiny_xlmr`)."""
    import json

    model = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    return [(piece, float(score)) for piece, score in model["vocab"]]
