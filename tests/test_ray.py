"""Ray Data engine on a local Ray: the same embedding store as single-process encode, resumed after a SIGKILL,
refusals of another run's folder, and Kiwi analysis equal to the in-process tokenizer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from koembed.encoding import ray_engine
from koembed.encoding.job import encode_corpus
from koembed.encoding.ray_engine import RayOptions, encode_corpus_ray, tokenize_ray
from koembed.encoding.shards import read_embeddings
from koembed.errors import EmbeddingStoreError
from koembed.lexical import KiwiTokenizer, UserDict, get_analyzer
from koembed.models import ModelSpec
from tests.helpers import QUIET, ROOT

TWO = RayOptions(workers=2)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir, corpus):
    """The single-process store of the sample (chunks of 10), to compare with."""
    out = tmp_path_factory.mktemp("single")
    encode_corpus(str(tiny_model_dir), *corpus, out, chunk_size=10, options=QUIET)
    return out


def chunk_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*/chunk-*"))}


def test_ray_encode_equals_single_process(ray_cluster, tmp_path, tiny_model_dir, corpus, single):
    report = encode_corpus_ray(str(tiny_model_dir), *corpus, tmp_path, ray_options=TWO, chunk_size=10, options=QUIET)
    assert (report.encoded, report.skipped) == (5, 0) and report.manifest["complete"]
    ray_vectors, ray_manifest = read_embeddings([tmp_path], *corpus)
    vectors, manifest = read_embeddings([single], *corpus)
    np.testing.assert_allclose(ray_vectors, vectors, atol=1e-5)
    assert {k: ray_manifest[k] for k in ("model", "precision", "dimension", "corpus")} == \
        {k: manifest[k] for k in ("model", "precision", "dimension", "corpus")}
    again = encode_corpus_ray(str(tiny_model_dir), *corpus, tmp_path, ray_options=TWO, chunk_size=10, options=QUIET)
    assert (again.encoded, again.skipped) == (0, 5)  # finished chunks are skipped, Ray is not even asked


def test_other_corpus_or_model_is_refused(ray_cluster, tmp_path, tiny_model_dir, corpus, single):
    ids, texts = corpus
    with pytest.raises(EmbeddingStoreError, match="corpus"):
        encode_corpus_ray(str(tiny_model_dir), ids, [texts[0] + " 바뀜", *texts[1:]], single, ray_options=TWO,
                          chunk_size=10, options=QUIET)
    with pytest.raises(EmbeddingStoreError, match="model"):
        encode_corpus_ray("minilm", ids, texts, single, ray_options=TWO, chunk_size=10, options=QUIET)
    with pytest.raises(EmbeddingStoreError, match="auto"):
        encode_corpus_ray(ModelSpec(str(tiny_model_dir), precision="auto"), ids, texts, tmp_path, options=QUIET,
                          ray_options=RayOptions(gpus_per_worker=1))
    with pytest.raises(EmbeddingStoreError, match="0 GPUs"):  # refused, rather than waiting for one forever
        encode_corpus_ray(ModelSpec(str(tiny_model_dir), precision="bf16"), ids, texts, tmp_path / "gpu",
                          options=QUIET, ray_options=RayOptions(gpus_per_worker=1))


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_output(ray_cluster, tmp_path, tiny_model_dir):
    from koembed.data import load_documents

    docs = tmp_path / "corpus.jsonl"
    with docs.open("w", encoding="utf-8") as handle:
        for i in range(800):
            text = f"전세 보증금 {i}번 반환 안내와 여권 재발급 절차 {i % 7}"
            handle.write(json.dumps({"id": f"d{i}", "text": text}, ensure_ascii=False) + "\n")
    passages = load_documents(docs)
    ids, texts = list(passages), list(passages.values())
    out, manifest = tmp_path / "ray", tmp_path / "ray" / "shard-0-of-1" / "manifest.json"
    # The CLI joins the session's Ray cluster; it is killed once some chunks, not all, are written.
    cli = subprocess.Popen([sys.executable, "-m", "koembed.cli", "encode", "-m", str(tiny_model_dir), "--corpus",
                            str(docs), "--out", str(out), "--chunk-size", "25", "--engine", "ray", "--address",
                            ray_cluster, "--workers", "2", "--precision", "fp32", "-q"], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    listed = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and cli.poll() is None:
            try:
                listed = len(json.loads(manifest.read_text(encoding="utf-8"))["chunks"])
            except (OSError, ValueError):
                listed = 0
            if listed >= 2:
                break
            time.sleep(0.02)
    finally:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
    assert 2 <= listed < 32, listed
    fp32 = ModelSpec(str(tiny_model_dir), precision="fp32")  # as the CLI ran it (backend auto would pick another)
    resumed = encode_corpus_ray(fp32, ids, texts, out, ray_options=TWO, chunk_size=25, options=QUIET)
    assert resumed.skipped >= 2 and resumed.encoded + resumed.skipped == 32
    whole = tmp_path / "whole"
    encode_corpus(fp32, ids, texts, whole, chunk_size=25, options=QUIET)
    np.testing.assert_allclose(read_embeddings([out], ids, texts)[0], read_embeddings([whole], ids, texts)[0],
                               atol=1e-5)
    assert chunk_files(out).keys() == chunk_files(whole).keys()


def test_analysis_on_ray_equals_in_process(ray_cluster, corpus, monkeypatch):
    monkeypatch.setattr(ray_engine, "KIWI_BLOCK", 20)  # the sample's 48 passages in three blocks
    assert tokenize_ray(corpus[1], TWO, show_progress=False) == get_analyzer("mecab")(corpus[1])  # the default
    user_dict = UserDict.parse("보증금반환\n")
    assert tokenize_ray(corpus[1], TWO, show_progress=False, analyzer="kiwi", user_dict=user_dict) == KiwiTokenizer(
        user_dict=user_dict)(corpus[1])


def test_a_local_ray_runs_in_a_folder_of_its_own_removed_after_and_after_a_kill(tmp_path, monkeypatch):
    """Fault 21.8: every local Ray left a /tmp/ray/session_* folder. koembed's session now runs in
    ``koembed-ray-PID-*`` (``_temp_dir``), removed at shutdown; one a killed koembed left (its pid dead) goes at
    the next start, one of a live process stays. Joining a cluster (an address) passes no folder."""
    import ray

    monkeypatch.setattr(ray_engine.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = tmp_path / f"koembed-ray-{dead.pid}-x", tmp_path / f"koembed-ray-{os.getpid()}-y"
    (stale / "session_1").mkdir(parents=True)
    live.mkdir()
    calls = []

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    with ray_engine.ray_session(None):
        temp = Path(calls[0]["_temp_dir"])
        assert temp.is_dir() and temp.parent == tmp_path and temp.name.startswith(f"koembed-ray-{os.getpid()}-")
        assert not stale.exists() and live.is_dir()
    assert calls[-1] == "shutdown" and not temp.exists()
    calls.clear()
    with pytest.raises(RuntimeError), ray_engine.ray_session(None):
        temp = Path(calls[0]["_temp_dir"])
        raise RuntimeError("a failed encode")
    assert calls[-1] == "shutdown" and not temp.exists()
    calls.clear()
    with ray_engine.ray_session("auto"):
        assert "_temp_dir" not in calls[0]
