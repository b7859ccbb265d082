"""Damaged model folders (docs/RELIABILITY.md, round 3, faults 21.3 and 21.4): non-finite weights in any model,
and a static folder whose files do not fit together, are a clean :class:`ModelLoadError` naming the file (the
CLI exits 2) when the model loads, not an index of NaN vectors, a traceback, or a RuntimeError at query time.

Each damaged folder is made from a good one by hand: one file rewritten, everything else as saved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import ModelLoadError
from koembed.models import encode, load_model
from koembed.models.static import learn_tokenizer, save_model, static_model


@pytest.fixture(scope="module")
def good_static(tmp_path_factory, sample) -> Path:
    """A small untrained static model of the sample's word pieces (vocabulary ~1,000, 16 dimensions)."""
    folder = tmp_path_factory.mktemp("good-static") / "model"
    save_model(static_model(learn_tokenizer(list(sample.corpus.values()), vocab_size=300), dim=16), folder)
    return folder


def _table(folder: Path):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")["embedding.weight"]


def _damage(kind: str, good: Path, folder: Path) -> str:
    """Copy ``good`` to ``folder`` and damage it as ``kind`` says; returns the file the error must name."""
    from safetensors.torch import save_file

    shutil.copytree(good, folder)
    weights, tokenizer = folder / "model.safetensors", folder / "tokenizer.json"
    table = _table(good).clone()
    if kind in ("all-nan", "nan-row", "inf"):
        if kind == "all-nan":
            table[:] = float("nan")
        elif kind == "nan-row":
            table[5] = float("nan")
        else:
            table[3, 2] = float("inf")
        save_file({"embedding.weight": table}, weights)
        return str(weights)
    if kind == "fewer-rows":
        save_file({"embedding.weight": table[:100].contiguous()}, weights)
    elif kind == "one-dimensional":
        save_file({"embedding.weight": table[:, 0].contiguous()}, weights)
    elif kind == "wrong-key":
        save_file({"weights": table}, weights)
    elif kind == "truncated-header":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif kind == "truncated-data":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif kind == "tokenizer-garbage":
        tokenizer.write_text("{not json", encoding="utf-8")
        return str(tokenizer)
    elif kind == "tokenizer-link":
        tokenizer.unlink()
        os.symlink("/etc/passwd", tokenizer)
        return str(tokenizer)
    return str(weights)


DAMAGE = ["all-nan", "nan-row", "inf", "fewer-rows", "one-dimensional", "wrong-key", "truncated-header",
          "truncated-data", "tokenizer-garbage", "tokenizer-link"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_static_folder_is_a_load_error_naming_the_file(tmp_path, good_static, kind):
    named = _damage(kind, good_static, tmp_path / kind)
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(tmp_path / kind))
    assert named in str(caught.value)
    result = CliRunner().invoke(app, ["index", "build", "-m", str(tmp_path / kind), "--corpus", "sample",
                                      "--out", str(tmp_path / "idx")])
    assert result.exit_code == 2, result.output
    assert named in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "idx").exists()


def test_the_good_folder_still_loads_with_its_own_vectors(good_static, sample):
    model = load_model(str(good_static))
    texts = list(sample.queries.values())[:4]
    table = _table(good_static).numpy()
    ids = model[0].tokenizer.encode(texts[0], add_special_tokens=False).ids
    mean = table[ids].mean(axis=0)
    np.testing.assert_allclose(encode(model, texts[:1])[0], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)


def test_a_larger_table_than_the_vocabulary_still_loads(tmp_path, good_static):
    """Rows past the vocabulary are never looked up (a model2vec table may carry some): not an error."""
    import torch
    from safetensors.torch import save_file

    shutil.copytree(good_static, tmp_path / "m")
    table = _table(good_static)
    save_file({"embedding.weight": torch.cat([table, table[:7]])}, tmp_path / "m" / "model.safetensors")
    assert load_model(str(tmp_path / "m"))[0].num_embeddings == table.shape[0] + 7


def test_a_transformer_with_a_non_finite_weight_is_a_load_error(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_model_dir, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("attention.self.query.weight"))
    tensors[name][0, 0] = float("nan")
    save_file(tensors, weights)
    with pytest.raises(ModelLoadError, match="NaN or infinity") as caught:
        load_model(str(tmp_path / "m"))
    assert str(weights) in str(caught.value)
