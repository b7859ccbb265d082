"""Helpers shared by the test modules (no test module imports another): stand-in models and retrievers, a
transcription of AutoRAG's metric functions, a uvicorn server in a thread, fault injection for training, run-file
and CLI helpers, the headless browser, Kiwi's own analysis as an independent reference, and manifest forgery."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from koembed.models import EncodeOptions

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
KORQUAD = SHARED_DATA / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json"
QUIET = EncodeOptions(show_progress=False)
NEW_TEXT = "반려묘 전용 사료의 새벽 배송은 주문 다음 날 오전 일곱 시 전에 문 앞에 도착합니다."  # a passage to add to an index


def require_shared(path: Path) -> Path:
    """Return ``path`` if it exists; fail in CI, skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing: the licensed Korean data lives in ../shared/data beside the checkout"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


class FixedModel:
    """Stands in for a SentenceTransformer: embeddings looked up from a table, so results are known."""

    similarity_fn_name = "cosine"
    max_seq_length = 128

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def encode(self, texts, **_):
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


class ListRetriever:
    """Returns fixed rankings; for fusion tests."""

    show_progress = False

    def __init__(self, name, hits):
        self.name, self.hits = name, hits

    def fit(self, doc_ids, texts):
        pass

    def search(self, queries, k):
        return [self.hits[q][:k] for q in queries]


def lucene_bm25(query_terms, docs_terms, k1=1.2, b=0.75):
    """Lucene's BM25, written out: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b dl/avgdl))."""
    n = len(docs_terms)
    avgdl = sum(len(d) for d in docs_terms) / n
    df = Counter(t for d in docs_terms for t in set(d))
    scores = []
    for doc in docs_terms:
        tf = Counter(doc)
        s = 0.0
        for t in query_terms:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(s)
    return np.array(scores)


# --- AutoRAG's definitions, transcribed in AutoRAG's own style (autorag/evaluation/metric/retrieval.py) ---
def ref_recall(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    pred_set = set(pred)
    hits = sum(any(pred_id in gt_set for pred_id in pred_set) for gt_set in gt_sets)
    return hits / len(gt) if len(gt) > 0 else 0.0


def ref_precision(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    pred_set = set(pred)
    hits = sum(any(pred_id in gt_set for gt_set in gt_sets) for pred_id in pred_set)
    return hits / len(pred) if len(pred) > 0 else 0.0


def ref_f1(gt, pred):
    r, p = ref_recall(gt, pred), ref_precision(gt, pred)
    return 0 if r + p == 0 else 2 * (r * p) / (r + p)


def ref_ndcg(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    relevance = {pid: 1 if any(pid in s for s in gt_sets) else 0 for pid in set(pred)}
    dcg = sum((2 ** relevance[d] - 1) / math.log2(i + 2) for i, d in enumerate(pred))
    n_gt = len(list(itertools.chain.from_iterable(gt)))
    ideal = [1] * min(n_gt, len(pred)) + [0] * max(0, len(pred) - n_gt)
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0


def ref_mrr(gt, pred):
    rr = []
    for gt_set in [frozenset(g) for g in gt]:
        for i, pid in enumerate(pred):
            if pid in gt_set:
                rr.append(1.0 / (i + 1))
                break
    return sum(rr) / len(gt) if rr else 0.0


def ref_map(gt, pred):
    ap = []
    for gt_set in [frozenset(g) for g in gt]:
        hits = [1 if pid in gt_set else 0 for pid in pred]
        precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h == 1]
        ap.append(sum(precisions) / len(precisions) if precisions else 0.0)
    return sum(ap) / len(gt) if ap else 0.0


REFERENCE = {"f1": ref_f1, "recall": ref_recall, "precision": ref_precision, "ndcg": ref_ndcg, "mrr": ref_mrr,
             "map": ref_map}


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port in a background thread; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def make_parity_m3(out_dir, vocab) -> Path:
    """The tiny bge-m3-layout model of the M3 parity fixture, rebuilt from its tokenizer vocabulary."""
    from koembed.models.testing import make_tiny_m3

    return make_tiny_m3(Path(out_dir), seed=0, unigram_vocab=[tuple(v) for v in vocab])


def m3_fingerprint(folder: Path) -> str:
    """sha256 over a bge-m3-layout model's tensors (encoder and both heads) and its vocabulary: what the M3
    parity fixture was computed from (tests/fixtures/m3_parity.py)."""
    import hashlib
    import json

    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    digest = hashlib.sha256()
    tensors = dict(sorted(load_file(str(folder / "model.safetensors")).items()))
    for head in ("sparse_linear.pt", "colbert_linear.pt"):
        for name, tensor in sorted(torch.load(folder / head, map_location="cpu", weights_only=True).items()):
            tensors[f"{head}:{name}"] = tensor
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(tensor.float().contiguous().numpy().tobytes())
    vocab = AutoTokenizer.from_pretrained(str(folder)).get_vocab()
    digest.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    return digest.hexdigest()


def kill_after_step(step: int):
    """A TrainerCallback that dies like a killed job (SIGKILL, no clean-up) once the Trainer has saved
    checkpoint ``step``: callbacks given to ``train`` run before koembed marks it complete, so this is the
    worst moment (the checkpoint is written, old ones may be due for removal, the marker is not there)."""
    from transformers import TrainerCallback

    class KillAfterStep(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAfterStep()


def kill_after_upserts(count: int) -> None:
    """Make every Qdrant client (qdrant-client's and the embedded engine's) die like a killed job (SIGKILL, no
    clean-up) once ``count`` upserts are done."""
    from qdrant_client import QdrantClient

    from koembed.index.qdrant_embedded import EmbeddedClient

    done = []
    for cls in (QdrantClient, EmbeddedClient):
        def dying(self, *args, _upsert=cls.upsert, **kwargs):
            result = _upsert(self, *args, **kwargs)
            done.append(1)
            if len(done) >= count:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        cls.upsert = dying


def bm25_reference(corpus_tokens: list[list[str]], query_tokens: list[str], k1: float, b: float, avgdl: float
                   ) -> np.ndarray:
    """Lucene BM25 of one query against every passage, written out from the formula (no bm25s, no hashing)."""
    from collections import Counter

    n = len(corpus_tokens)
    df = Counter(t for doc in corpus_tokens for t in set(doc))
    scores = np.zeros(n)
    for i, doc in enumerate(corpus_tokens):
        tf = Counter(doc)
        for t in query_tokens:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                scores[i] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


def kill_on_replace(target: str | Path, nth: int, when: str) -> None:
    """Make this process SIGKILL itself at its ``nth`` ``os.replace`` into ``target`` (a folder), ``before`` or
    ``after`` the rename: every koembed write ends in one (atomic files, staged folders, manifest switches),
    so the count picks an exact point of an update to die at."""
    real, root, calls = os.replace, str(Path(target).resolve()), 0

    def replace(src, dst, *args, **kwargs):
        nonlocal calls
        inside = str(Path(dst).resolve()).startswith(root)
        calls += inside
        if inside and calls == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, *args, **kwargs)
        if inside and calls == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace


def train_tiny_static(folder: Path, rs, **config) -> Path:
    """Train a tiny static model on ``rs``'s query-passage pairs with koembed train; returns its final folder.
    ``config`` entries (``train__seed=3``) override the recipe's keys."""
    import yaml

    from koembed.data import pairs_from_retrieval_set, write_pairs
    from koembed.training import load_config, train

    folder.mkdir(parents=True, exist_ok=True)
    write_pairs(folder / "pairs.jsonl", pairs_from_retrieval_set(rs))
    cfg = {"model": {"type": "static", "static": {"vocab_size": 400, "dim": 32}},
           "data": {"train": [{"type": "pairs", "path": str(folder / "pairs.jsonl")}]},
           "train": {"batch_size": 32, "epochs": 3, "save_steps": 1000, "logging_steps": 1000},
           "output_dir": str(folder / "run")}
    for key, value in config.items():
        node = cfg
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (folder / "static.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return Path(train(load_config(folder / "static.yaml"), show_progress=False)["final_model"])


def assert_same_ranking(got, want, tol=1e-5):
    """Same scores (relative ``tol``) in the same order; ids equal except among passages tied within ``tol``."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=tol, atol=tol)
        for i, ((gd, gs), (wd, _)) in enumerate(zip(g, w)):
            if gd != wd:  # only a tie may swap: the other list holds gd at a score within tol
                assert any(d == gd and abs(s - gs) <= tol * max(1, abs(gs)) for d, s in w), (gd, i)


if __name__ == "__main__":
    if sys.argv[1] == "kill-on-replace":  # python -m tests.helpers kill-on-replace TARGET N before|after ARGS...
        from koembed.cli import app

        kill_on_replace(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        app(sys.argv[5:], prog_name="koembed")
    elif sys.argv[1] == "qdrant-add":  # python -m tests.helpers qdrant-add MODEL INDEX DOCS N: add, die after N upserts
        from koembed.data import load_documents
        from koembed.index import add_documents
        from koembed.models import load_model

        kill_after_upserts(int(sys.argv[5]))
        docs = load_documents(sys.argv[4])
        add_documents(sys.argv[3], list(docs), list(docs.values()), encoder=load_model(sys.argv[2]), options=QUIET)
    else:  # python -m tests.helpers CONFIG STEP: train, and die after STEP
        from koembed.training import load_config, train

        train(load_config(sys.argv[1]), show_progress=False, callbacks=[kill_after_step(int(sys.argv[2]))])


@contextmanager
def serving_cli(*args: str, timeout: float = 90) -> Iterator[str]:
    """Run ``koembed serve ARGS`` as a subprocess on 127.0.0.1 and a free port; yield its base URL once /health
    answers; stop it after (terminate, then kill)."""
    import socket
    import subprocess
    import tempfile

    import httpx

    with socket.socket() as sock:  # a free port (released just before the server binds it)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # a file, not a pipe: a full pipe would block the server's logging (closed with the server, below)
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "koembed.cli", "serve", *args, "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        deadline = time.monotonic() + timeout
        while not answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"koembed serve did not start (exit code {proc.poll()}): {log.read()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        proc.kill()  # nothing to do once it has exited
        proc.wait()
        log.close()


def write_mteb_dataset(rs, folder: Path, split: str = "dev") -> Path:
    """``rs`` as a local copy of an mteb retrieval dataset repository: parquet files for the configs ``corpus``
    (``_id``, ``title``, ``text``), ``queries`` (``_id``, ``text``) and ``default`` (qrels: ``query-id``,
    ``corpus-id``, ``score``), declared in the README's YAML header as the hub's dataset cards declare them."""
    import pandas as pd

    tables = {
        "corpus": pd.DataFrame({"_id": list(rs.corpus), "title": [""] * len(rs.corpus),
                                "text": list(rs.corpus.values())}),
        "queries": pd.DataFrame({"_id": list(rs.queries), "text": list(rs.queries.values())}),
        "default": pd.DataFrame([{"query-id": q, "corpus-id": d, "score": 1}
                                 for q in rs.queries for d in sorted(rs.relevant_ids(q))]),
    }
    header = ["---", "configs:"]
    for config, table in tables.items():
        (folder / config).mkdir(parents=True, exist_ok=True)
        table.to_parquet(folder / config / f"{split}-00000-of-00001.parquet", index=False)
        header += [f"- config_name: {config}", "  data_files:", f"  - split: {split}",
                   f"    path: {config}/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join(header + ["---", ""]), encoding="utf-8")
    return folder


# --------------------------------------------------------------------------- shared by several test modules


def read_run(path):
    """A run file's rankings ``{qid: [docid, ...]}`` and rows, checked: ranks 1..n, scores not increasing."""
    hits = defaultdict(list)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            hits[row["qid"]].append(row)
    for rows in hits.values():
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(rows))
    return {qid: [r["docid"] for r in rows] for qid, rows in hits.items()}, hits


def cli_commands(group, prefix: str = "") -> dict:
    """Every command of the CLI by its full name ("index build"), from the click group typer builds."""
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group
            found.update(cli_commands(command, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


def chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver (make test installs them with apt-get); skip, or fail under CI=true."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = ("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; "
               "make test does it where it can)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# The classes koembed.lexical's analyzers keep, written out from their docstrings (not imported): an independent rule.
KEPT = {"NNG": "N", "NNP": "N", "NR": "N", "XR": "N", "VV": "V", "VA": "V", "SN": "SN", "SL": "SL", "SH": "SH",
        "MAG": "MAG"}


@functools.cache
def kiwi_object():
    """The kiwipiepy Kiwi object itself, called directly (koembed's, to load the model only once: seconds)."""
    from koembed.lexical import KiwiTokenizer

    return KiwiTokenizer().kiwi


def kiwi_token(morpheme) -> str | None:
    """The token koembed's Kiwi analyzer should make of one Kiwi morpheme, by the rule above."""
    base = morpheme.tag.split("-", 1)[0]
    cls = "W" if base.startswith("W_") else KEPT.get(base)
    return None if cls is None else f"{morpheme.form.lower()}/{cls}"


NEW_DOCS = {"new-1": "반려묘 전용 사료의 새벽 배송은 주문 다음 날 오전 일곱 시 전에 도착합니다.",
            "new-2": "도서관 좌석 예약은 하루 전 오후 여섯 시부터 모바일 앱에서 할 수 있습니다."}


def cli(*args):
    """``koembed ARGS`` in process (typer's CliRunner), every argument as text."""
    from typer.testing import CliRunner

    from koembed.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_exit(result, *words: str) -> None:
    """Exit 2 with an error message (no traceback) that holds every word."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    output = " ".join(result.output.split())  # rich wraps long messages
    assert "Traceback" not in output
    for word in words:
        assert word in output, output


def edit_manifest(folder: Path, change) -> None:
    """Apply ``change`` to the index folder's manifest.json in place (a forger's edit: nothing re-sealed)."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
