"""koembed.models.static_numpy: a static model run with numpy gives sentence-transformers' embeddings, and an index's
static model is reloaded that way (no torch imported by `koembed index add` or a dense search)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from koembed.errors import ModelLoadError
from koembed.models import encode, load_model
from koembed.models.static import static_model
from koembed.models.static_numpy import NumpyStaticModel, numpy_static_folder
from tests.helpers import QUIET, ROOT

EDGE = ["", "   ", "ㅋ", "AI 2024 漢字 🙂", "전세 보증금을 돌려받지 못했어요. " * 40]


@pytest.mark.parametrize("name", ["static-ko", "tiny"])
def test_numpy_static_equals_sentence_transformers(name, tiny_static_dir, sample):
    path = str(ROOT / "src/koembed/models/static_ko") if name == "static-ko" else str(tiny_static_dir)
    texts = [*sample.corpus.values(), *EDGE]
    ours, st = NumpyStaticModel(path), load_model(path)
    for prompt in (None, "query: "):
        opts = {"prompt": prompt} if prompt else {}
        np.testing.assert_allclose(ours.encode(texts, **opts), st.encode(texts, convert_to_numpy=True, **opts),
                                   atol=1e-6)
    np.testing.assert_allclose(encode(ours, texts, QUIET), encode(st, texts, QUIET), atol=1e-6)  # koembed's path
    assert ours.encode(EDGE[:2]).tolist() == [[0.0] * ours.get_embedding_dimension()] * 2  # no token: zeros
    assert ours.prompts == dict(getattr(st, "prompts", {}))


def test_folders_it_does_not_run_are_said_so(tmp_path, tiny_static_dir):
    assert numpy_static_folder(tiny_static_dir) and not numpy_static_folder(tmp_path)
    spaced = tmp_path / "spaced"
    static_model(load_model(str(tiny_static_dir))[0].tokenizer, dim=8, spacing="kiwi").save(str(spaced))
    assert not numpy_static_folder(spaced)  # respaces with Kiwi first: sentence-transformers runs it
    with pytest.raises(ModelLoadError):
        NumpyStaticModel(spaced)


def test_index_commands_on_a_static_index_import_no_torch(tmp_path):
    """`koembed index add` and a dense search reload the bundled static-ko with numpy (python -X importtime lists
    every module imported), and find what they added."""
    from koembed.index import build_index

    out = tmp_path / "idx"
    build_index("static-ko", ["a", "b"], ["전세 보증금 반환 소송", "여권 발급 절차"], out, options=QUIET)
    docs = tmp_path / "new.jsonl"
    docs.write_text(json.dumps({"id": "c", "text": "정기예금 중도해지 이율"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    for args in (["index", "add", "--index", str(out), "--docs", str(docs), "-q"],
                 ["search", "정기예금 해지", "--index", str(out), "--mode", "dense", "--json", "-k", "1"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "koembed", *args], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "koembed.models.static_numpy" in imported
        assert not imported & {"torch", "sentence_transformers", "transformers"}
    assert json.loads(done.stdout.splitlines()[0])["docid"] == "c"
