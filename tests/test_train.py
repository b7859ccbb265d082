"""Training: config validation, the card's recipe as a dry run, a tiny real run, resume after SIGKILL,
data hygiene, the model card, and a 2-process CPU torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from koembed.cli import app
from koembed.data.pairs import read_pairs
from koembed.errors import ConfigError, DataError
from koembed.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def write_config(path: Path, **changes) -> Path:
    cfg = {
        "model": {"base": "PLACEHOLDER", "pooling": "cls", "max_seq_length": 64},
        "data": {"train": [{"type": "pairs", "path": "PLACEHOLDER"}]},
        "loss": {"name": "cached_mnrl", "mini_batch_size": 4},
        "train": {"batch_size": 8, "learning_rate": 1e-4, "max_steps": 6, "save_steps": 2, "logging_steps": 2,
                  "seed": 3},
        "output_dir": str(path.parent / "run"),
    }
    for key, value in changes.items():
        node = cfg
        parts = key.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory, sample) -> Path:
    """Training pairs written from the bundled sample (our own text)."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for qid in sample.query_ids:
            for doc in sorted(sample.relevant_ids(qid)):
                handle.write(json.dumps({"query": sample.queries[qid], "positive": sample.corpus[doc]},
                                        ensure_ascii=False) + "\n")
    return path


def test_unknown_or_ill_typed_keys_are_named(tmp_path):
    path = write_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.lerning_rate=1e-4", "train.epochs=many"])
    message = str(info.value)
    assert "train.lerning_rate" in message and "train.epochs" in message
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.batch_size"])
    assert load_config(path, ["train.batch_size=64"]).train.batch_size == 64


def test_bge_m3_ko_dry_run_prints_the_card_recipe_without_network(monkeypatch, korquad_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["train", "configs/bge-m3-ko.yaml", "--dry-run"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "training pairs:" in result.stderr and "duplicates dropped" in result.stderr
    cfg, plan = doc["config"], doc["plan"]
    assert cfg["model"] == {"type": "transformer", "base": "BAAI/bge-m3", "pooling": "cls", "normalize": True,
                            "max_seq_length": 8192, "query_prompt": None, "passage_prompt": None, "static": None,
                            "save_dtype": "float32"}
    assert cfg["loss"]["name"] == "cached_mnrl"
    t = cfg["train"]
    assert (t["batch_size"], t["learning_rate"], t["scheduler"], t["precision"], t["epochs"], t["seed"]) == \
        (32768, 3e-5, "linear", "fp16", 3, 42)
    assert t["warmup_ratio"] == pytest.approx(1 / 30) and t["no_duplicates"] is True
    assert plan["mini_batches_per_column_per_step"] == 32768 // 32
    assert plan["total_steps"] == 3 * plan["steps_per_epoch"]
    assert plan["warmup_steps"] == -(-plan["total_steps"] // 30)
    assert plan["architecture"]["hidden_size"] == 1024


def test_pairs_readers_and_errors(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"query": "질문", "positive": "답", "negatives": ["오답1", "오답2"]}\n', encoding="utf-8")
    assert read_pairs(jsonl)[0].negatives == ("오답1", "오답2")
    csv = tmp_path / "p.csv"
    csv.write_text('query,positive,negatives\n질문,답,"[""오답""]"\n', encoding="utf-8")
    assert read_pairs(csv)[0].negatives == ("오답",)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "질문"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="positive"):
        read_pairs(bad)


def test_overlap_with_eval_is_refused_unless_allowed(tmp_path, tiny_model_dir, pairs_file):
    from koembed.training.trainer import load_training_data

    path = write_config(tmp_path / "c.yaml", model__base=str(tiny_model_dir),
                        data__train=[{"type": "pairs", "path": str(pairs_file)}] * 2,
                        data__eval={"path": "sample", "steps": 2})
    with pytest.raises(DataError, match="also appear in the evaluation set"):
        load_training_data(load_config(path))
    data = load_training_data(load_config(path, ["data.allow_overlap=true"]))
    n_pairs = sum(1 for _ in pairs_file.open(encoding="utf-8"))
    assert data.dropped_duplicates == n_pairs and len(data.pairs) == n_pairs  # the second copy is dropped
    assert data.overlap["queries"] > 0


def run_cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "koembed.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.mark.slow
def test_tiny_training_resumes_after_sigkill_to_the_same_weights(tmp_path, tiny_model_dir, pairs_file):
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    def config(name):
        return write_config(tmp_path / f"{name}.yaml", model__base=str(tiny_model_dir),
                            data__train=[{"type": "pairs", "path": str(pairs_file)}],
                            data__eval={"path": "sample", "steps": 3}, data__allow_overlap=True,
                            output_dir=str(tmp_path / name))

    straight = run_cli("train", str(config("straight")), "-q")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = subprocess.run([sys.executable, "-m", "tests.helpers", str(config("killed")), "4"], cwd=ROOT,
                            capture_output=True, text=True)  # trains with a callback that SIGKILLs after step 4
    assert killed.returncode == -9  # SIGKILL: no clean-up ran
    assert not (tmp_path / "killed" / "final").exists()
    # A checkpoint whose save was interrupted (no completion marker) must be ignored and removed.
    partial = tmp_path / "killed" / "checkpoint-5"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half-written")
    refused = run_cli("train", str(config("killed")), "-q")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_cli("train", str(config("killed")), "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not partial.exists()

    a = load_file(tmp_path / "straight" / "final" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "final" / "model.safetensors")
    init = load_file(tiny_model_dir / "model.safetensors")
    assert max(float((a[k] - init[k]).abs().max()) for k in a) > 1e-4  # training moved the weights
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-6)

    final = tmp_path / "straight" / "final"
    model = SentenceTransformer(str(final), device="cpu")
    assert model.encode(["전세 보증금"]).shape == (1, 32)
    card = (final / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["language"] == ["ko"] and meta["library_name"] == "sentence-transformers"
    recorded = json.loads((final / "koembed_training.json").read_text())
    ndcg = recorded["metrics"]["cosine_ndcg@10"]
    index = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert index["cosine_ndcg@10"] == pytest.approx(round(ndcg, 4))
    assert f"| cosine_ndcg@10 | {ndcg:.4f} |" in card and "XLMRobertaModel" in card

    # koembed card adds bench tables.
    results = tmp_path / "results.json"
    bench = CliRunner().invoke(app, ["bench", "-r", "bm25", "--top-k", "1,10", "--out", str(results), "-q"])
    assert bench.exit_code == 0
    assert CliRunner().invoke(app, ["card", "--model", str(final), "--results", str(results)]).exit_code == 0
    card = (final / "README.md").read_text(encoding="utf-8")
    assert "AutoRAG metrics, top-k = 10" in card and f"| cosine_ndcg@10 | {ndcg:.4f} |" in card


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(tmp_path, tiny_model_dir, pairs_file):
    cfg = write_config(tmp_path / "ddp.yaml", model__base=str(tiny_model_dir),
                       data__train=[{"type": "pairs", "path": str(pairs_file)}], train__max_steps=3,
                       train__save_steps=3, output_dir=str(tmp_path / "ddp"))
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29533", "-m", "koembed.cli",
                             "train", str(cfg), "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "ddp" / "final" / "koembed_training.json").read_text())
    assert record["plan"]["world_size"] == 2 and record["global_step"] == 3


def test_local_hf_dataset_source_and_matryoshka_run(tmp_path, tiny_model_dir, sample):
    """The `hf` source goes through datasets.load_dataset (here a local folder, as offline users have);
    Matryoshka wraps the loss and the run completes."""
    folder = tmp_path / "hfdata"
    folder.mkdir()
    rows = [{"question": sample.queries[q], "answer": sample.corpus[sorted(sample.relevant_ids(q))[0]]}
            for q in sample.query_ids[:40]]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    cfg = write_config(tmp_path / "hf.yaml", model__base=str(tiny_model_dir),
                       data__train=[{"type": "hf", "name": str(folder), "query_column": "question",
                                     "positive_column": "answer"}],
                       loss__matryoshka_dims=[32, 16], train__max_steps=2, train__save_steps=2,
                       output_dir=str(tmp_path / "hfrun"))
    result = CliRunner().invoke(app, ["train", str(cfg), "-q"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "hfrun" / "final" / "koembed_training.json").read_text())
    assert record["examples"] == len({(r["question"], r["answer"]) for r in rows})
    assert record["config"]["loss"]["matryoshka_dims"] == [32, 16] and record["global_step"] == 2


# --------------------------------------------------------------------------- red-team fault classes (RELIABILITY.md)


@pytest.mark.parametrize("override, key", [
    ("train.learning_rate=.inf", "train.learning_rate"), ("train.learning_rate=.nan", "train.learning_rate"),
    ("loss.scale=-.inf", "loss.scale"), ("train.epochs=.inf", "train.epochs"),
    ("train.batch_size=true", "train.batch_size"), ("train.max_steps=2.5", "train.max_steps"),
    ("loss.matryoshka_dims=[16, true]", "loss.matryoshka_dims.1"), ("model.normalize=1", "model.normalize"),
])
def test_non_finite_numbers_and_booleans_as_integers_are_refused_by_name(tmp_path, override, key):
    path = write_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, [override])
    assert f"  {key}:" in str(info.value)
    assert load_config(path, ["train.learning_rate=1e-4"]).train.learning_rate == 1e-4  # YAML text, a number


def test_matryoshka_dims_larger_than_the_model_are_refused_in_the_dry_run(tmp_path, tiny_model_dir, pairs_file):
    cfg = write_config(tmp_path / "c.yaml", model__base=str(tiny_model_dir),
                       data__train=[{"type": "pairs", "path": str(pairs_file)}], loss__matryoshka_dims=[64, 32, 16])
    result = CliRunner().invoke(app, ["train", str(cfg), "--dry-run"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "loss.matryoshka_dims: 64 larger than the model's 32 dimensions" in " ".join(result.output.split())
    assert CliRunner().invoke(app, ["train", str(cfg), "--dry-run", "--set", "loss.matryoshka_dims=[32, 16]"]
                              ).exit_code == 0


def test_diverged_training_stops_keeps_the_last_good_checkpoint_and_saves_no_final(tmp_path, tiny_model_dir,
                                                                                    pairs_file):
    import torch
    from transformers import TrainerCallback

    from koembed.errors import TrainingDivergedError
    from koembed.training import train
    from koembed.training.checkpoints import COMPLETE_MARKER

    class PoisonAfterStep3(TrainerCallback):  # what a too-large learning rate does, at a known step
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    cfg = load_config(write_config(tmp_path / "c.yaml", model__base=str(tiny_model_dir),
                                   data__train=[{"type": "pairs", "path": str(pairs_file)}],
                                   train__keep_checkpoints=1, output_dir=str(tmp_path / "run")))
    with pytest.raises(TrainingDivergedError, match="checkpoint-2") as info:
        train(cfg, show_progress=False, callbacks=[PoisonAfterStep3()])
    assert "NaN or infinity" in str(info.value)
    run = tmp_path / "run"
    assert not (run / "final").exists()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (run / "checkpoint-2" / COMPLETE_MARKER).is_file()


@pytest.mark.slow
def test_kill_after_save_before_marker_keeps_the_last_complete_checkpoint(tmp_path, tiny_model_dir, pairs_file):
    """keep_checkpoints 1: the Trainer's own rotation deleted checkpoint-2 as soon as checkpoint-4 was written,
    before koembed marked 4 complete, so a kill there left nothing to resume from."""
    from koembed.training.checkpoints import COMPLETE_MARKER

    cfg = write_config(tmp_path / "c.yaml", model__base=str(tiny_model_dir),
                       data__train=[{"type": "pairs", "path": str(pairs_file)}], train__keep_checkpoints=1,
                       output_dir=str(tmp_path / "run"))
    killed = subprocess.run([sys.executable, "-m", "tests.helpers", str(cfg), "4"], cwd=ROOT, capture_output=True,
                            text=True)  # SIGKILL in on_save of step 4: written by the Trainer, not yet marked
    assert killed.returncode == -9, killed.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "checkpoint-4").is_dir() and not (run / "checkpoint-4" / COMPLETE_MARKER).exists()
    assert (run / "checkpoint-2" / COMPLETE_MARKER).is_file()  # the last complete one survived
    resumed = run_cli("train", str(cfg), "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "final" / "koembed_training.json").read_text())["global_step"] == 6
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-6"]  # keep_checkpoints: 1
