"""Model loading and the BGE-m3 architecture, on the tiny XLM-R and the bundled MiniLM."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from koembed import models
from koembed.errors import ModelLoadError
from koembed.files import sha256_file
from koembed.models import locate
from koembed.models.embed import token_budget_batches


def test_tiny_model_is_the_bge_m3_architecture(tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer

    model = models.load_model(str(tiny_model_dir), backend="torch", precision="fp32")  # auto: bf16 on some CPUs
    assert type(model[0].model).__name__ == "XLMRobertaModel"
    assert model[1].get_config_dict()["pooling_mode"] == "cls"
    texts = ["전세 보증금을 돌려받지 못했어요", "여권 재발급 준비물", "짧은 글"]
    ours = models.encode(model, texts, show_progress=False)
    # Independently: the encoder's hidden state at position 0 (<s>), L2-normalised.
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    enc = AutoModel.from_pretrained(str(tiny_model_dir)).eval()
    with torch.no_grad():
        batch = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        cls = enc(**batch).last_hidden_state[:, 0]
    expected = torch.nn.functional.normalize(cls, dim=-1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert ours.dtype == np.float32 and ours.shape == (3, 32)


def test_encode_keeps_input_order_and_max_seq_length_is_per_call(tiny_model_dir):
    model = models.load_model(str(tiny_model_dir), backend="torch")
    texts = ["가" * 5, "나라의 역사와 문화에 관한 아주 긴 문장입니다 " * 6, "다"]
    all_at_once = models.encode(model, texts, batch_size=2, show_progress=False)
    one_by_one = np.stack([models.encode(model, [t], show_progress=False)[0] for t in texts])
    np.testing.assert_allclose(all_at_once, one_by_one, atol=1e-5)
    in_chunks = models.encode(model, texts * 3, batch_size=2, chunk_size=2, show_progress=False)
    np.testing.assert_allclose(in_chunks, np.concatenate([one_by_one] * 3), atol=1e-5)
    short = models.encode(model, texts, max_seq_length=8, show_progress=False)
    assert model.max_seq_length == 128
    assert not np.allclose(short[1], all_at_once[1], atol=1e-4)  # the long text was cut at 8 tokens


def test_plain_encoder_folder_is_wrapped_with_cls_pooling(tiny_model_dir, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(str(tiny_model_dir)).save_pretrained(tmp_path / "enc")
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(tmp_path / "enc")
    wrapped = models.load_model(str(tmp_path / "enc"), backend="torch")
    assert [type(m).__name__ for m in wrapped] == ["Transformer", "Pooling", "Normalize"]
    original = models.load_model(str(tiny_model_dir), backend="torch")
    np.testing.assert_allclose(models.encode(wrapped, ["보증금"], show_progress=False),
                               models.encode(original, ["보증금"], show_progress=False), atol=1e-6)


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no model folder"):
        models.load_model(str(tmp_path / "nope" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="neither"):
        models.load_model(str(tmp_path / "empty"))


def test_unreachable_hub_fails_fast_and_suggests_a_local_path(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # empty cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        models.load_model("BAAI/bge-m3")
    assert time.perf_counter() - start < 60
    message = str(info.value)
    assert "unreachable" in message and "local path" in message and "BAAI/bge-m3" in message


@pytest.mark.slow
def test_bundled_minilm_is_verified_and_loads():
    path = locate.bundled_minilm_path()
    assert sha256_file(path / "model.safetensors") == locate.MINILM_SHA256
    model = models.load_model("minilm")
    emb = models.encode(model, ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock prices fell."],
                        show_progress=False)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3  # real weights: paraphrases are close


def test_bundled_minilm_with_wrong_checksum_is_refused(monkeypatch):
    locate.bundled_minilm_path.cache_clear()
    monkeypatch.setattr(locate, "MINILM_SHA256", "0" * 64)
    try:
        with pytest.raises(ModelLoadError, match="sha256"):
            models.load_model("minilm")
    finally:
        locate.bundled_minilm_path.cache_clear()


def test_token_budget_batches_respect_the_budget():
    lengths = [5, 100, 7, 60, 60, 3, 250, 8]
    batches = token_budget_batches(lengths, 128)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 128
        assert lengths[batch[0]] == longest  # longest first
    assert [6] in batches  # longer than the budget: alone


def test_token_budget_encoding_equals_fixed_batches(tiny_model_dir, monkeypatch):
    model = models.load_model(str(tiny_model_dir), backend="torch")
    texts = ["짧은 질문"] * 5 + ["나라의 역사와 문화에 관한 아주 긴 문장입니다 " * 8] * 3 + ["보증금 반환 절차 안내"] * 4
    expected = models.encode(model, texts, batch_size=4, show_progress=False)
    sizes = []
    real = model.encode

    def recording(batch, **kwargs):
        sizes.append((len(batch), kwargs["batch_size"]))
        return real(batch, **kwargs)

    monkeypatch.setattr(model, "encode", recording)
    got = models.encode(model, texts, max_batch_tokens=64, show_progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert all(n == size for n, size in sizes) and len(sizes) >= 3  # one model call per budgeted batch
