"""Tiny models with the real classes, for tests and benchmarks: the bge-m3 code path in seconds."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from koembed.data import sample_texts
from koembed.models.loading import build_model


def make_tiny_xlmr(out_dir: str | Path, texts: Sequence[str] | None = None, vocab_size: int = 800,
                   hidden_size: int = 32, layers: int = 2, seed: int = 0, initializer_range: float = 0.5,
                   max_length: int = 128) -> Path:
    """Save a tiny, randomly initialised XLM-RoBERTa + CLS pooling + Normalize model to ``out_dir``.

    Same classes as ``BAAI/bge-m3`` (XLMRobertaModel, a SentencePiece-style Unigram tokenizer with
    XLM-R's special tokens), toy sizes, so tests run the bge-m3 code path in seconds. The tokenizer is
    trained on ``texts`` (default: the bundled Korean sample). Deterministic for a given ``seed``.
    ``initializer_range`` is far above XLM-R's 0.02: at 0.02 a tiny random encoder maps every text to nearly
    the same vector (cosine 1.0 to four decimals), which would leave rankings to tie order. ``max_length`` is
    the longest input in tokens (XLM-R's position table has two more rows).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    if texts is None:
        texts = sample_texts()
    out_dir = Path(out_dir)
    scratch = tempfile.TemporaryDirectory()
    encoder_dir = Path(scratch.name) / "encoder"
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
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
    model = build_model(str(encoder_dir), pooling="cls", normalize=True, max_seq_length=max_length, device="cpu")
    model.save(str(out_dir))
    scratch.cleanup()
    return out_dir
