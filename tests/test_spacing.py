"""Spacing-robust static models (issue 23): Kiwi's spacing before the static tokenizer, recorded in the folder and
honoured by every loader; old folders unchanged; the training config's key."""

from __future__ import annotations

import json

import numpy as np
import pytest

from koembed.errors import ConfigError, ModelLoadError
from koembed.models import encode, load_model, resolve, token_lengths
from koembed.models.spec import ModelSpec
from koembed.models.static import SPACED_TYPE, describe_static, static_module, untrained_like
from koembed.training.config import load_config
from tests.helpers import QUIET, train_tiny_static

WRITTEN = "전세 보증금은 언제 돌려받나요?"
UNSPACED = "전세보증금은언제돌려받나요?"
ODD = "전세보 증금은언 제돌려받나요?"


@pytest.fixture(scope="module")
def kiwi():
    """Kiwi loaded here on its own, not through koembed: the expectations do not go through the code under test."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=1)


@pytest.fixture(scope="module")
def spaced_dir(tmp_path_factory, sample):
    return train_tiny_static(tmp_path_factory.mktemp("spaced"), sample, model__static__spacing="kiwi")


def _by_hand(model, kiwi, texts):
    """The mean of the token vectors of Kiwi's respacing of each text, L2-normalised: what the model must give."""
    module = static_module(model)
    weights = module.embedding.weight.detach().float().numpy()
    rows = []
    for text in texts:
        ids = module.tokenizer.encode(kiwi.space(text, reset_whitespace=True), add_special_tokens=False).ids
        vector = weights[ids].mean(0)
        rows.append(vector / np.linalg.norm(vector))
    return np.array(rows)


def test_spacing_is_recorded_and_honoured_on_reload(spaced_dir, kiwi):
    assert json.loads((spaced_dir / "modules.json").read_text())[0]["type"] == SPACED_TYPE
    assert json.loads((spaced_dir / "koembed_spacing.json").read_text()) == {"spacing": "kiwi"}
    model = load_model(str(spaced_dir))
    assert describe_static(model)["spacing"] == "kiwi"
    texts = [WRITTEN, UNSPACED, ODD, "서울 시청은 어디에 있나요"]
    got = encode(model, texts, QUIET)
    np.testing.assert_allclose(got, _by_hand(model, kiwi, texts), atol=1e-5)
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)  # as written and without spaces: the same embedding
    np.testing.assert_allclose(got[0], got[2], atol=1e-6)
    module = static_module(model)
    assert token_lengths(model, texts) == [
        len(module.tokenizer.encode(kiwi.space(t, reset_whitespace=True), add_special_tokens=False).ids) for t in texts]


def test_every_loader_respaces_the_same(spaced_dir):
    from sentence_transformers import SentenceTransformer

    reference = encode(load_model(str(spaced_dir)), [UNSPACED, WRITTEN], QUIET)
    plan = resolve(ModelSpec(str(spaced_dir)))  # backend auto: a static model stays on torch, in fp32
    assert (plan.backend, plan.precision, plan.static) == ("torch", "fp32", True)
    auto = load_model(str(spaced_dir), backend="auto", precision="auto")
    np.testing.assert_allclose(encode(auto, [UNSPACED, WRITTEN], QUIET), reference, atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):  # plain sentence-transformers refuses, never ignores
        SentenceTransformer(str(spaced_dir))
    trusted = SentenceTransformer(str(spaced_dir), trust_remote_code=True)
    np.testing.assert_allclose(trusted.encode([UNSPACED, WRITTEN]), reference, atol=1e-6)
    baseline = untrained_like(load_model(str(spaced_dir)))
    assert describe_static(baseline)["spacing"] == "kiwi"
    unspaced, written = encode(baseline, [UNSPACED, WRITTEN], QUIET)
    np.testing.assert_allclose(unspaced, written, atol=1e-6)


def test_a_folder_without_spacing_reads_text_as_typed(tiny_static_dir, kiwi):
    model = load_model(str(tiny_static_dir))
    assert "koembed_spacing" not in (tiny_static_dir / "modules.json").read_text()
    assert describe_static(model)["spacing"] == "none"
    module = static_module(model)
    weights = module.embedding.weight.detach().float().numpy()
    ids = module.tokenizer.encode(UNSPACED, add_special_tokens=False).ids  # as typed, not respaced
    vector = weights[ids].mean(0)
    np.testing.assert_allclose(encode(model, [UNSPACED], QUIET)[0], vector / np.linalg.norm(vector), atol=1e-5)


def test_a_spaced_folder_without_its_spacing_file_is_refused(spaced_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(spaced_dir, broken)
    (broken / "koembed_spacing.json").unlink()
    with pytest.raises(ModelLoadError, match="koembed_spacing.json"):
        load_model(str(broken))


def test_model2vec_export_of_a_spaced_model_is_refused(spaced_dir, tmp_path):
    from koembed.models.export import export_model2vec

    with pytest.raises(ModelLoadError, match="model2vec"):
        export_model2vec(load_model(str(spaced_dir)), tmp_path / "m2v")
    assert not (tmp_path / "m2v").exists()


def test_training_config_spacing_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {type: static}\ndata: {train: [{type: pairs, path: p.jsonl}]}\noutput_dir: out\n")
    assert load_config(path).model.static.spacing == "none"
    assert load_config(path, ["model.static.spacing=kiwi"]).model.static.spacing == "kiwi"
    with pytest.raises(ConfigError, match=r"model\.static\.spacing"):
        load_config(path, ["model.static.spacing=mecab"])
    with pytest.raises(ConfigError, match=r"model\.static\.spacng"):
        load_config(path, ["model.static.spacng=kiwi"])


def test_each_spacing_is_kiwi_s_own_output(kiwi, tmp_path):
    from koembed.models.spacing import respace
    from koembed.models.static import learn_tokenizer, static_model

    texts = [WRITTEN, UNSPACED, ODD, "New York 여행 가이드", ""]
    assert respace(texts, "none") == texts
    assert respace(texts, "kiwi") == [kiwi.space(t, reset_whitespace=True) for t in texts]
    assert respace(texts, "kiwi-keep") == [kiwi.space(t, reset_whitespace=False) for t in texts]
    assert respace(texts, "kiwi-morph") == [" ".join(m.form for m in kiwi.tokenize(kiwi.space(t, reset_whitespace=True)))
                                            for t in texts]
    with pytest.raises(ModelLoadError, match="unknown spacing"):
        respace(texts, "mecab")
    model = static_model(learn_tokenizer(respace(texts * 3, "kiwi-keep"), vocab_size=120, min_frequency=1), dim=8,
                         spacing="kiwi-keep")
    model.save(str(tmp_path / "keep"))
    reloaded = load_model(str(tmp_path / "keep"))
    assert describe_static(reloaded)["spacing"] == "kiwi-keep"
    np.testing.assert_allclose(encode(reloaded, [UNSPACED], QUIET), _by_hand_keep(reloaded, kiwi, [UNSPACED]), atol=1e-5)


def _by_hand_keep(model, kiwi, texts):
    module = static_module(model)
    weights = module.embedding.weight.detach().float().numpy()
    rows = []
    for text in texts:
        vector = weights[module.tokenizer.encode(kiwi.space(text, reset_whitespace=False), add_special_tokens=False).ids].mean(0)
        rows.append(vector / np.linalg.norm(vector))
    return np.array(rows)
