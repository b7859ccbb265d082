"""Fast encoding: weight precision, sharded resumable `koembed encode`, and indexes built from stored embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from koembed import models
from koembed.cli import app
from koembed.encoding import job as embeddings
from koembed.encoding.job import encode_corpus
from koembed.encoding.shards import read_embeddings
from koembed.errors import EmbeddingStoreError, ModelLoadError
from koembed.index import build_index, load_index
from koembed.models import ModelSpec
from koembed.models import precision as precision_module
from koembed.models.prompts import role_options
from tests.helpers import QUIET

CHUNK = 5  # 48 sample passages -> 10 chunks in one shard, 5 per shard of two


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def docs(sample) -> tuple[list[str], list[str]]:
    return list(sample.corpus), list(sample.corpus.values())


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, docs) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "passages.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(*docs)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(model, docs) -> np.ndarray:
    return models.encode(model, docs[1], show_progress=False)


def crash_on_second_encode(monkeypatch, error: BaseException) -> list[int]:
    """Make the embedding store's encode raise ``error`` on its second call (a job dying mid-run); returns the
    list of chunk sizes it was called with."""
    real = models.encode
    calls: list[int] = []

    def crashing(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(embeddings, "encode", crashing)
    return calls


def _encode(tiny_model_dir, docs, out, precision="fp32", **kw):
    return encode_corpus(ModelSpec(str(tiny_model_dir), precision=precision), *docs, out, chunk_size=CHUNK,
                         options=QUIET, **kw)


# --------------------------------------------------------------------------- precision


def test_bf16_embeddings_are_close_to_fp32_and_float32(tiny_model_dir, docs, reference):
    bf16 = models.load_model(str(tiny_model_dir), precision="bf16")
    assert models.model_precision(bf16) == "bf16"
    emb = models.encode(bf16, docs[1], show_progress=False)
    assert emb.dtype == np.float32 and emb.shape == reference.shape
    cosine = np.sum(emb * reference, axis=1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99


def test_exact_settings_are_fp32_torch(model):
    assert models.model_precision(model) == "fp32"


def test_resolve_precision_rules(monkeypatch, tmp_path):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert models.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert models.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert models.resolve_precision("auto", "cpu") == "fp32"
    assert models.resolve_precision("auto", "mps") == "fp32"
    for explicit in ("fp32", "bf16"):
        assert models.resolve_precision(explicit, "cpu") == explicit
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert models.resolve_precision("auto", "cuda:0") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert models.resolve_precision("auto", "cuda") == "fp32"
    assert models.resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ModelLoadError, match="unknown precision"):
        models.resolve_precision("int8", "cpu")


AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def test_one_precision_decision_on_an_amx_cpu(monkeypatch, tiny_model_dir, corpus_file, docs, tmp_path):
    """``auto`` on a CPU that reports AMX: the loader, the store's record and the Ray worker's check agree, for a
    static model (kept in fp32: a lookup gains nothing from bf16) and a transformer (bf16)."""
    from koembed.encoding.ray_engine import ChunkEncoder

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AMX)
    for name, expected in (("static-ko", "fp32"), (str(tiny_model_dir), "bf16")):
        spec = ModelSpec(name, precision="auto", device="cpu")
        assert models.resolve(spec).precision == expected
        assert models.expected_precision(spec) == expected
        assert models.model_precision(models.load_model(spec)) == expected
        ChunkEncoder(spec, QUIET, models.expected_precision(spec), threads=1)  # the Ray worker accepts its model
        out = tmp_path / Path(name).name
        result = cli("encode", "--model", name, "--corpus", corpus_file, "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "shard-0-of-1" / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["precision"] == expected
        stored, _ = read_embeddings([out], *docs)
        reference = models.load_model(name, precision="fp32", device="cpu")
        fp32 = models.encode(reference, docs[1], role_options(QUIET, reference, "passage"))
        gap = float(np.abs(stored - fp32).max())
        assert gap < 1e-5 if expected == "fp32" else gap > 1e-3  # the vectors are what the record says
    with pytest.raises(EmbeddingStoreError, match="the store records bf16"):
        ChunkEncoder(ModelSpec("static-ko", precision="auto", device="cpu"), QUIET, "bf16", threads=1)


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 amx_bf16 avx512f\n\nprocessor\t: 1\n", encoding="utf-8")
    monkeypatch.delenv(precision_module.CPUINFO_ENV)  # the suite's pinned CPU (conftest.py)
    monkeypatch.setattr(precision_module, "CPUINFO", cpuinfo)
    assert {"amx_bf16", "avx512f"} <= precision_module.cpu_flags()
    assert models.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_module, "CPUINFO", tmp_path / "missing")
    assert precision_module.cpu_flags() == frozenset()
    assert models.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv(precision_module.CPUINFO_ENV, str(cpuinfo))  # another CPU's file wins over this one's
    assert models.resolve_precision("auto", "cpu") == "bf16"


def test_fp16_on_cpu_is_refused(tiny_model_dir, corpus_file, tmp_path):
    with pytest.raises(ModelLoadError, match="fp16 on cpu is refused"):
        models.load_model(str(tiny_model_dir), device="cpu", precision="fp16")
    result = cli("encode", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", tmp_path / "e",
                 "--precision", "fp16", "--device", "cpu", "--quiet")
    assert result.exit_code == 2 and "fp16" in result.output
    assert not (tmp_path / "e").exists()


# --------------------------------------------------------------------------- koembed encode


def test_encode_cli_single_shard_equals_models_encode(tiny_model_dir, corpus_file, docs, reference, tmp_path):
    out = tmp_path / "emb"
    result = cli("encode", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", out,
                 "--chunk-size", CHUNK, "--precision", "fp32", "--quiet")
    assert result.exit_code == 0, result.output
    shard = out / "shard-0-of-1"
    manifest = json.loads((shard / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["complete"] and manifest["dimension"] == reference.shape[1]
    assert manifest["precision"] == "fp32" and manifest["dtype"] == "float32"
    assert len(manifest["chunks"]) == 10 and (shard / "chunk-000009.npy").is_file()
    assert json.loads((shard / "chunk-000000.ids.json").read_text(encoding="utf-8")) == docs[0][:CHUNK]
    stored = np.concatenate([np.load(shard / f"chunk-{k:06d}.npy", allow_pickle=False) for k in range(10)])
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, reference, atol=1e-5)
    vectors, _ = read_embeddings([out], *docs, model_name=str(tiny_model_dir))
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_encode_float16_storage(tiny_model_dir, docs, reference, tmp_path):
    report = _encode(tiny_model_dir, docs, tmp_path, dtype="float16")
    assert np.load(report.shard_dir / "chunk-000000.npy", allow_pickle=False).dtype == np.float16
    vectors, manifest = read_embeddings([tmp_path], *docs)
    assert vectors.dtype == np.float32 and manifest["dtype"] == "float16"
    np.testing.assert_allclose(vectors, reference, atol=2e-3)  # float16 keeps ~3 decimal digits of |v| <= 1


def test_two_shards_concatenated_equal_one_shard(tiny_model_dir, docs, tmp_path):
    whole = _encode(tiny_model_dir, docs, tmp_path / "one")
    assert whole.encoded == 10
    for i in range(2):
        report = _encode(tiny_model_dir, docs, tmp_path / "two", shard=(i, 2))
        assert report.shard_dir.name == f"shard-{i}-of-2" and report.manifest["complete"]
    first = json.loads((tmp_path / "two" / "shard-0-of-2" / "chunk-000000.ids.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "two" / "shard-1-of-2" / "chunk-000000.ids.json").read_text(encoding="utf-8"))
    assert first == docs[0][:CHUNK] and second == docs[0][24: 24 + CHUNK]  # contiguous, by position
    one, _ = read_embeddings([tmp_path / "one"], *docs)
    two, _ = read_embeddings([tmp_path / "two"], *docs)
    np.testing.assert_allclose(two, one, atol=1e-5)


def test_resume_encodes_only_the_remaining_chunks(tiny_model_dir, docs, tmp_path, monkeypatch):
    real = models.encode
    calls = crash_on_second_encode(monkeypatch, KeyboardInterrupt("killed mid-chunk"))
    with pytest.raises(KeyboardInterrupt):
        _encode(tiny_model_dir, docs, tmp_path / "resumed")
    shard = tmp_path / "resumed" / "shard-0-of-1"
    assert (shard / "chunk-000000.npy").is_file() and not (shard / "chunk-000001.npy").exists()
    assert not [p for p in shard.iterdir() if p.name.endswith(".tmp")]  # no partial file left
    assert not json.loads((shard / "manifest.json").read_text(encoding="utf-8"))["complete"]

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(embeddings, "encode", counting)
    report = _encode(tiny_model_dir, docs, tmp_path / "resumed")
    assert len(calls) == 9 and (report.encoded, report.skipped) == (9, 1) and report.manifest["complete"]
    calls.clear()
    again = _encode(tiny_model_dir, docs, tmp_path / "resumed")  # complete: nothing to do, no model loaded
    assert calls == [] and (again.encoded, again.skipped) == (0, 10)

    monkeypatch.setattr(embeddings, "encode", real)
    _encode(tiny_model_dir, docs, tmp_path / "straight")
    resumed, _ = read_embeddings([tmp_path / "resumed"], *docs)
    straight, _ = read_embeddings([tmp_path / "straight"], *docs)
    np.testing.assert_array_equal(resumed, straight)


def test_damaged_chunk_is_encoded_again(tiny_model_dir, docs, tmp_path):
    report = _encode(tiny_model_dir, docs, tmp_path)
    (report.shard_dir / "chunk-000003.npy").write_bytes(b"garbage")
    with pytest.raises(EmbeddingStoreError, match="chunk-000003.npy"):
        read_embeddings([tmp_path], *docs)
    again = _encode(tiny_model_dir, docs, tmp_path)
    assert (again.encoded, again.skipped) == (1, 9)
    read_embeddings([tmp_path], *docs)


def test_changed_corpus_or_options_are_errors(tiny_model_dir, docs, tmp_path):
    _encode(tiny_model_dir, docs, tmp_path)
    ids, texts = docs
    changed = (ids, texts[:-1] + [texts[-1] + " (수정)"])
    with pytest.raises(EmbeddingStoreError, match="corpus"):
        _encode(tiny_model_dir, changed, tmp_path)
    with pytest.raises(EmbeddingStoreError, match="another corpus"):
        read_embeddings([tmp_path], *changed)
    with pytest.raises(EmbeddingStoreError, match="dtype"):
        _encode(tiny_model_dir, docs, tmp_path, dtype="float16")
    with pytest.raises(EmbeddingStoreError, match="precision"):
        _encode(tiny_model_dir, docs, tmp_path, precision="bf16")
    other_model = tmp_path / "other-model"  # compared by path before anything is loaded
    other_model.mkdir()
    with pytest.raises(EmbeddingStoreError, match="model"):
        encode_corpus(str(other_model), *docs, tmp_path, chunk_size=CHUNK, options=QUIET)
    with pytest.raises(EmbeddingStoreError, match="made with"):
        read_embeddings([tmp_path], *docs, model_name=str(other_model))
    # The CLI: a rerun over a different corpus file exits 2 with the reason.
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(*changed)),
                     encoding="utf-8")
    result = cli("encode", "--model", tiny_model_dir, "--corpus", other, "--out", tmp_path,
                 "--chunk-size", CHUNK, "--quiet")
    assert result.exit_code == 2 and "corpus" in result.output


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "0/0"])
def test_bad_shard_option(text, tiny_model_dir, corpus_file, tmp_path):
    result = cli("encode", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", tmp_path, "--shard", text)
    assert result.exit_code == 2 and "shard" in result.output


# --------------------------------------------------------------------------- index from stored embeddings


def test_index_from_two_shards_equals_build_index(tiny_model_dir, model, corpus_file, docs, sample, tmp_path):
    for i in range(2):  # one --out per "machine"
        result = cli("encode", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", tmp_path / f"m{i}",
                     "--shard", f"{i}/2", "--chunk-size", CHUNK, "--precision", "fp32", "--quiet")
        assert result.exit_code == 0, result.output
    result = cli("index", "build", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", tmp_path / "idx",
                 "--kind", "flat", "--from-embeddings", tmp_path / "m0", "--from-embeddings", tmp_path / "m1",
                 "--precision", "fp32", "--quiet")
    assert result.exit_code == 0, result.output
    build_index(str(tiny_model_dir), *docs, tmp_path / "direct", options=QUIET, encoder=model)
    stored, direct = load_index(tmp_path / "idx", encoder=model), load_index(tmp_path / "direct", encoder=model)
    assert stored.manifest.model == direct.manifest.model and stored.doc_ids == direct.doc_ids
    queries = list(sample.queries.values())
    for mode in ("dense", "hybrid"):
        got, want = stored.search(queries, 5, mode=mode), direct.search(queries, 5, mode=mode)
        assert [[d for d, _ in hits] for hits in got] == [[d for d, _ in hits] for hits in want]
        np.testing.assert_allclose([[s for _, s in h] for h in got], [[s for _, s in h] for h in want], atol=1e-5)


def test_index_from_embeddings_with_a_missing_shard_fails_and_writes_nothing(tiny_model_dir, corpus_file,
                                                                               docs, tmp_path):
    _encode(tiny_model_dir, docs, tmp_path / "emb", shard=(0, 2))
    out = tmp_path / "idx"
    result = cli("index", "build", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", out,
                 "--from-embeddings", tmp_path / "emb", "--quiet")
    assert result.exit_code == 2 and "shard-1-of-2" in result.output
    assert not out.exists()


def test_index_from_incomplete_shard_fails(tiny_model_dir, docs, tmp_path, monkeypatch):
    from koembed.index import build_index_from_embeddings

    crash_on_second_encode(monkeypatch, RuntimeError("killed"))
    with pytest.raises(RuntimeError):
        _encode(tiny_model_dir, docs, tmp_path / "emb")
    with pytest.raises(EmbeddingStoreError, match="incomplete"):
        build_index_from_embeddings(str(tiny_model_dir), [tmp_path / "emb"], *docs, tmp_path / "idx",
                                    show_progress=False)
    assert not (tmp_path / "idx").exists()


def test_index_built_in_bf16_takes_fp32_queries_and_the_reverse(tmp_path, tiny_model_dir, sample, model):
    """encode/index build/serve default to --precision auto (bf16 on bf16-capable CPUs): an index built in one
    precision must accept queries embedded in the other, and rank nearly the same."""
    bf16 = models.load_model(str(tiny_model_dir), precision="bf16")
    ids, texts = sample.doc_ids, list(sample.corpus.values())
    queries = list(sample.queries.values())
    for built_with, queried_with in ((bf16, model), (model, bf16)):
        out = tmp_path / f"idx-{models.model_precision(built_with)}"
        build_index(str(tiny_model_dir), ids, texts, out, options=QUIET, encoder=built_with)
        index = load_index(out, encoder=queried_with)  # the probe check tolerates the precision change
        reference = load_index(out, encoder=built_with).search(queries, len(ids), mode="dense")
        crossed = index.search(queries, 1, mode="dense")
        # The tiny random model's best passages are often within 1e-3 of each other, below bf16's precision
        # (cosines move by up to ~0.035): a changed top hit must be one the reference scores within that of its best.
        for hits, ref in zip(crossed, reference):
            assert dict(ref)[hits[0][0]] >= ref[0][1] - 0.05
        same = sum(hits[0][0] == ref[0][0] for hits, ref in zip(crossed, reference))
        assert same >= 0.8 * len(queries)


def test_encode_runs_in_auto_precision_by_default(tiny_model_dir, corpus_file, tmp_path):
    result = cli("encode", "--model", tiny_model_dir, "--corpus", corpus_file, "--out", tmp_path / "e", "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "e" / "shard-0-of-1" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["precision"] == models.expected_precision(ModelSpec(str(tiny_model_dir)))  # the Python default
