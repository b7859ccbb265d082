"""CPU encoding speed: plain sentence-transformers (fp32, and its one-line bf16 cast) versus koembed's settings,
on short and long Korean passages, with the ndcg@10 change of exactly the timed embeddings.

    python bench/encode_speed.py --model minilm --out out/encode_speed.json   # ~28 min on 2 busy cores
    python bench/encode_speed.py --model minilm --corpora long --passages 8 --max-lengths 256 --rounds 2 \
        --calibration 32 --settings plain-fp32,plain-bf16,onnx-int8,openvino,openvino-int8,openvino-int8-ptq,auto
    python bench/encode_speed.py --model bge-m3-random --corpora long --passages 8 --max-lengths 256 \\
        --rounds 2 --settings plain-fp32,plain-bf16,bf16,bf16-compile,onnx-int8 --out out/encode_speed_large.json

Corpora (``--passages`` of each, drawn with a fixed seed; the queries are those whose relevant passage is drawn):
``korquad`` = paragraphs of the held-out KorQuAD articles (mean ~540 characters) and their questions;
``long`` = synthetic 800-1,500-character passages of random words from the bundled sample's vocabulary, each
query six words of its one passage (long OCR'd documents: every passage fills the max length);
``msmarco`` = MS MARCO-ko held-out passages (mean ~180 characters) and their queries.
Each corpus is run at every ``--max-lengths`` value, batch 32.

Settings: ``plain-fp32`` = ``SentenceTransformer.encode`` (the baseline), ``plain-bf16`` = the same after
``model.to(torch.bfloat16)`` (the best one-liner a user already has), then koembed's ``encode`` with
``fp32``, ``bf16`` (what ``--precision auto`` picks on a CPU with AVX512-BF16/AMX), ``bf16-compile`` /
``fp32-compile`` (the model's transformer through ``torch.compile``: inductor, ``freezing``, dynamic shapes; tried
here, not a koembed option: it did not win, docs/BENCHMARKS.md), ``onnx-int8`` (``--backend onnx-int8``:
dynamic int8), ``openvino`` / ``openvino-bf16`` / ``openvino-int8`` (``--backend openvino[-int8]``: the ``onnx``
export run by OpenVINO in fp32, bf16, or with NNCF int8 weights), ``auto`` (what koembed's defaults, backend and
precision ``auto``, pick on this machine; the setting it resolved to is printed), ``openvino-int8-ptq`` (tried
here, not a koembed option: NNCF's post-training quantisation, int8 activations too, calibrated like
``onnx-int8-static``) and ``onnx-int8-static`` / ``onnx-int8-static-pct`` (tried here, not a koembed option: it did not
win, docs/BENCHMARKS.md): the ``--backend onnx`` export through onnxruntime's ``quantize_static`` (QDQ,
per-channel int8 weights, uint8 activations of the weight MatMuls with ranges calibrated, MinMax on
``--calibration`` / Percentile on ``--calibration-percentile`` passages, at the largest max length; the passages
are KorQuAD development-split paragraphs and synthetic long passages of another seed, none of them timed).
Each setting is warmed up (the compile and the ONNX export happen there and are reported as ``setup_s``), then
the settings are timed in interleaved rounds (A, B, C, ..., rotated each round) on the same machine state; the
speed-up of a setting is the median over rounds of (plain-fp32 time / its time) in that round, with the min-max,
in wall time and in process CPU time (the CPU-time ratio is steadier on a shared machine). Queries are encoded
by the same setting; ndcg@10 is exact search over the last round's passage embeddings, and the cosine to
plain fp32 (mean, min over passages) compares them with plain fp32's.
``--model tiny-xlmr`` = random XLM-R 384 wide, 2 layers; ``bge-m3-random`` = random XLM-R at bge-m3's size
(bench/export_large.py): with random weights only their speed means anything (ndcg is noise).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import common

SETTINGS = {  # name -> (plain sentence-transformers?, precision, backend)
    "plain-fp32": (True, "fp32", "torch"), "plain-bf16": (True, "bf16", "torch"),
    "fp32": (False, "fp32", "torch"), "bf16": (False, "bf16", "torch"),
    "bf16-compile": (False, "bf16", "compile"), "fp32-compile": (False, "fp32", "compile"),
    "onnx-int8": (False, "fp32", "onnx-int8"), "onnx-int8-static": (False, "fp32", "onnx-int8-static"),
    "onnx-int8-static-pct": (False, "fp32", "onnx-int8-static"),
    "openvino": (False, "fp32", "openvino"), "openvino-bf16": (False, "bf16", "openvino"),
    "openvino-int8": (False, "fp32", "openvino-int8"), "openvino-int8-ptq": (False, "fp32", "openvino-int8-ptq"),
    "auto": (False, "auto", "auto")}
DEFAULT_SETTINGS = "plain-fp32,plain-bf16,fp32,bf16,onnx-int8,openvino,openvino-int8,auto"


def long_passages(n: int, seed: int = 0) -> tuple[dict[str, str], dict[str, str], dict[str, list[list[str]]]]:
    """``n`` synthetic passages of 800-1,500 characters (random words of the bundled sample) and one query of
    six of its words per passage."""
    from koembed.data import load_retrieval_set

    vocab = sorted({w for text in load_retrieval_set().corpus.values() for w in text.split()})
    rng = random.Random(seed)
    corpus, queries = {}, {}
    for i in range(n):
        size, words = rng.randint(800, 1500), []
        while sum(len(w) + 1 for w in words) < size:
            words.append(rng.choice(vocab))
        corpus[f"doc-{i}"] = " ".join(words)[:size].strip()
        queries[f"q{i}"] = " ".join(rng.sample(corpus[f"doc-{i}"].split()[:-1], 6))
    return corpus, queries, {f"q{i}": [[f"doc-{i}"]] for i in range(n)}


def load_corpus(name: str, n: int):
    """A :class:`koembed.data.RetrievalSet` of ``n`` passages of corpus ``name`` (see the module docstring)."""
    from koembed.data import RetrievalSet

    if name == "long":
        corpus, queries, relevant = long_passages(n)
        return RetrievalSet(name=f"long-{n}", queries=queries, corpus=corpus, relevant=relevant)
    path = common.KORQUAD if name == "korquad" else common.MSMARCO
    full = common.load_sets({name: (path, "test")})[name]
    drawn = set(random.Random(0).sample(full.doc_ids, min(n, len(full.doc_ids))))
    relevant = {q: [[d for d in g if d in drawn] for g in groups] for q, groups in full.relevant.items()}
    relevant = {q: [g for g in groups if g] for q, groups in relevant.items() if any(groups)}
    return RetrievalSet(name=f"{name}-{len(drawn)}", queries={q: full.queries[q] for q in relevant},
                        corpus={d: t for d, t in full.corpus.items() if d in drawn}, relevant=relevant)


def random_bge_m3(folder: Path) -> str:
    """XLM-RoBERTa with bge-m3's config numbers and random weights, with the tiny model's tokenizer."""
    import torch
    from gpu_check import BGE_M3  # same folder
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    from koembed.models.testing import make_tiny_xlmr

    tokenizer = AutoTokenizer.from_pretrained(str(make_tiny_xlmr(folder / "tiny")))
    torch.manual_seed(0)
    XLMRobertaModel(XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **BGE_M3)).save_pretrained(
        folder / "bge-m3-random")
    tokenizer.save_pretrained(folder / "bge-m3-random")
    return str(folder / "bge-m3-random")


def calibration_texts(n: int, seed: int = 1) -> list[str]:
    """``n`` passages for static int8 calibration, none of them timed: half KorQuAD development-split paragraphs
    (the timed ones are held-out ones), half synthetic long passages drawn with another seed."""
    train = common.load_sets({"korquad": (common.KORQUAD, "train")})["korquad"]
    texts = random.Random(seed).sample(list(train.corpus.values()), min(n // 2, len(train.corpus)))
    return texts + list(long_passages(n - len(texts), seed=seed + 1000)[0].values())


def static_int8(name: str, texts: list[str], max_length: int, folder: Path, method: str = "MinMax",
                **options):
    """Setting ``onnx-int8-static`` (bench only): koembed's fp32 ONNX export (``--backend onnx``) with its MatMuls
    quantised by onnxruntime's ``quantize_static`` (QDQ, per-channel int8 weights, uint8 activations whose
    ranges are calibrated on ``texts`` at ``max_length``, batches of 8), run in that encoder's place."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from koembed.models import load_model
    from koembed.models.onnx import GRAPH_FILE, WEIGHTS_FILE

    encoder = load_model(name, backend="onnx")
    batches = [{k: v for k, v in encoder.tokenizer(texts[i: i + 8], padding=True, truncation=True,
                                                   max_length=max_length, return_tensors="np").items()
                if k in encoder.inputs} for i in range(0, len(texts), 8)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self):
            return next(self.batches, None)

    folder.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(str(encoder.folder / GRAPH_FILE), load_external_data=False)
    weights = {t.name for t in graph.graph.initializer}
    # Only the MatMuls by a weight matrix: QDQ ignores MatMulConstBOnly, and a static range for the attention
    # products cost a lot of cosine (0.91 vs 0.98 with all MatMuls quantised, measured).
    settings = {"quant_format": QuantFormat.QDQ, "per_channel": True, "activation_type": QuantType.QUInt8,
                "weight_type": QuantType.QInt8, "calibrate_method": getattr(CalibrationMethod, method),
                "nodes_to_quantize": [n.name for n in graph.graph.node if n.op_type == "MatMul"
                                      and n.input[1] in weights], "op_types_to_quantize": ["MatMul"],
                "extra_options": {"OpTypesToExcludeOutputQuantization": ["MatMul"]}}
    quantize_static(str(encoder.folder / GRAPH_FILE), str(folder / GRAPH_FILE), Reader(),
                    use_external_data_format=(encoder.folder / WEIGHTS_FILE).exists(), **{**settings, **options})
    session = ort.SessionOptions()
    session.intra_op_num_threads = encoder.session.get_session_options().intra_op_num_threads
    session.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    encoder.session = ort.InferenceSession(str(folder / GRAPH_FILE), session, providers=["CPUExecutionProvider"])
    return encoder


def openvino_ptq(name: str, texts: list[str], max_length: int):
    """Setting ``openvino-int8-ptq`` (bench only): koembed's ``openvino`` encoder with its graph replaced by NNCF's
    post-training quantisation of it (``nncf.quantize``, transformer preset: int8 weights and activations, ranges
    calibrated on ``texts`` at ``max_length``, batches of 8)."""
    import nncf
    import numpy as np
    import openvino as ov

    from koembed.models import load_model

    encoder = load_model(name, backend="openvino", precision="fp32")
    batches = []
    for i in range(0, len(texts), 8):
        enc = encoder.tokenizer(texts[i: i + 8], padding=True, truncation=True, max_length=max_length,
                                return_tensors="np")
        batches.append({k: np.asarray(enc[k], dtype=np.int64) for k in encoder.inputs})
    core = ov.Core()
    quantized = nncf.quantize(core.read_model(str(encoder.graph)), nncf.Dataset(batches),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(texts))
    encoder.compiled = core.compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": "LATENCY"})
    return encoder


def compile_transformer(model):
    """``torch.compile`` (inductor, weights frozen as constants, dynamic batch and sequence shapes) on the
    ``forward`` of the Hugging Face model inside sentence-transformers' Transformer module: that module calls
    ``self.model.forward`` directly, so compiling the module object itself would be bypassed."""
    import torch

    inner = model[0].model
    inner.forward = torch.compile(inner.forward, dynamic=True, options={"freezing": True})
    return model


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--model", default="minilm", help="model name or folder, tiny-xlmr or bge-m3-random")
    parser.add_argument("--corpora", default="korquad,long,msmarco")
    parser.add_argument("--passages", type=int, default=48, help="passages per corpus")
    parser.add_argument("--max-lengths", type=common.int_list, default=[256, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma-separated of {', '.join(SETTINGS)}")
    parser.add_argument("--calibration", type=int, default=256, help="calibration passages of onnx-int8-static")
    parser.add_argument("--calibration-percentile", type=int, default=64,
                        help="calibration passages of onnx-int8-static-pct (its histograms hold every activation)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from koembed.evaluation.runner import score_run
    from koembed.models import encode, load_model
    from koembed.models.onnx import CACHE_ENV
    from koembed.models.testing import make_tiny_xlmr
    from koembed.ranking import id_ranks, top_k

    holder = tempfile.TemporaryDirectory(prefix="encode-speed-")  # removed at exit (bge-m3-random is 2.3 GB)
    scratch = Path(holder.name)
    os.environ.setdefault(CACHE_ENV, str(scratch / "cache"))  # a fresh ONNX export, timed as setup
    name = args.model
    if name == "tiny-xlmr":
        name = str(make_tiny_xlmr(scratch / "tiny", hidden_size=384, layers=2, max_length=max(args.max_lengths)))
    elif name == "bge-m3-random":
        name = random_bge_m3(scratch)
    chosen = [s for s in args.settings.split(",") if s]
    if chosen[0] != "plain-fp32" or any(s not in SETTINGS for s in chosen):
        parser.error(f"--settings must start with plain-fp32 and name only {', '.join(SETTINGS)}")
    models, setup = {}, {}
    for setting in chosen:
        plain, precision, backend = SETTINGS[setting]
        start = time.perf_counter()
        if backend == "onnx-int8-static":
            pct = setting.endswith("-pct")
            models[setting] = static_int8(name, calibration_texts(args.calibration_percentile if pct else
                                                                  args.calibration), max(args.max_lengths),
                                          scratch / setting, "Percentile" if pct else "MinMax")
            setup[setting] = time.perf_counter() - start
            continue
        if backend == "openvino-int8-ptq":
            models[setting] = openvino_ptq(name, calibration_texts(args.calibration), max(args.max_lengths))
            setup[setting] = time.perf_counter() - start
            continue
        if backend == "auto":
            from koembed.models import ModelSpec, resolve

            print(f"auto resolves to {resolve(ModelSpec(name, precision='auto', backend='auto'))}", flush=True)
        model = load_model(name, precision="fp32" if plain else precision,
                           backend="torch" if backend == "compile" else backend)
        if plain and precision == "bf16":
            model.to(torch.bfloat16)  # the user's one-liner
        if backend == "compile":
            compile_transformer(model)  # compiled at the first call (warm-up, counted in setup_s)
        models[setting], setup[setting] = model, time.perf_counter() - start

    def run(setting: str, texts: list[str], max_length: int) -> np.ndarray:
        model = models[setting]
        model.max_seq_length = max_length
        if SETTINGS[setting][0]:
            return np.asarray(model.encode(texts, batch_size=32, convert_to_numpy=True), dtype=np.float32)
        return encode(model, texts, batch_size=32, show_progress=False)

    rows = []
    from koembed.models.precision import cpu_flags

    features = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16"})
    print(f"model {args.model}; torch threads {torch.get_num_threads()}; CPU {features}; load {os.getloadavg()}",
          flush=True)
    for corpus_name in [c for c in args.corpora.split(",") if c]:
        rs = load_corpus(corpus_name, args.passages)
        texts, queries = list(rs.corpus.values()), [rs.queries[q] for q in rs.query_ids]
        for max_length in args.max_lengths:
            tokenizer = models["plain-fp32"].tokenizer
            tokens = [len(t) for t in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
            for setting in chosen:  # warm-up: the first call compiles (bf16-compile)
                start = time.perf_counter()
                run(setting, texts[:40], max_length)
                setup[setting] += time.perf_counter() - start
            wall: dict[str, list[float]] = {s: [] for s in chosen}
            cpu: dict[str, list[float]] = {s: [] for s in chosen}
            embeddings = {}
            for r in range(args.rounds):
                for setting in chosen[r % len(chosen):] + chosen[: r % len(chosen)]:
                    w, c = time.perf_counter(), time.process_time()
                    embeddings[setting] = run(setting, texts, max_length)
                    wall[setting].append(time.perf_counter() - w)
                    cpu[setting].append(time.process_time() - c)
                    print(f"  {rs.name} {max_length} round {r}: {setting} {wall[setting][-1]:.1f} s wall, "
                          f"{cpu[setting][-1]:.1f} s CPU", flush=True)
            for setting in chosen:
                q = run(setting, queries, max_length)
                ranks = id_ranks(rs.doc_ids)
                hits = {qid: top_k(embeddings[setting] @ q[i], ranks, rs.doc_ids, 10)
                        for i, qid in enumerate(rs.query_ids)}
                ir, _ = score_run(rs, hits, ())
                ratios = [b / t for b, t in zip(wall["plain-fp32"], wall[setting])]
                cpu_ratios = [b / t for b, t in zip(cpu["plain-fp32"], cpu[setting])]
                a, b = embeddings[setting], embeddings["plain-fp32"]
                cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                rows.append({"model": args.model, "corpus": rs.name, "max_length": max_length, "setting": setting,
                             "passages": len(texts), "queries": len(queries),
                             "mean_tokens": round(float(np.mean(tokens)), 1),
                             "truncated": round(float(np.mean([t >= max_length for t in tokens])), 3),
                             "passages_per_s": round(len(texts) / statistics.median(wall[setting]), 2),
                             "speedup": round(statistics.median(ratios), 2),
                             "speedup_range": [round(min(ratios), 2), round(max(ratios), 2)],
                             "cpu_speedup": round(statistics.median(cpu_ratios), 2),
                             "cpu_speedup_range": [round(min(cpu_ratios), 2), round(max(cpu_ratios), 2)],
                             "cosine_to_fp32": [round(float(cosines.mean()), 4), round(float(cosines.min()), 4)],
                             "ndcg@10": round(ir["ndcg@10"], 4), "load": [round(v, 2) for v in os.getloadavg()]})
            base = rows[-len(chosen)]["ndcg@10"]
            for row in rows[-len(chosen):]:
                row["ndcg_change"] = round(row["ndcg@10"] - base, 4)
                print(json.dumps(row), flush=True)
    print("\n| corpus | max len | tokens (mean, truncated) | setting | passages/s | wall speed-up (range) "
          "| CPU-time speed-up (range) | cosine to plain-fp32 (mean, min) | ndcg@10 | change |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['max_length']} | {r['mean_tokens']}, {r['truncated']:.0%} | {r['setting']} "
              f"| {r['passages_per_s']} "
              f"| {r['speedup']:.2f}x ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f}) "
              f"| {r['cpu_speedup']:.2f}x ({r['cpu_speedup_range'][0]:.2f}-{r['cpu_speedup_range'][1]:.2f}) "
              f"| {r['cosine_to_fp32'][0]:.4f}, {r['cosine_to_fp32'][1]:.4f} "
              f"| {r['ndcg@10']:.4f} | {r['ndcg_change']:+.4f} |")
    print("setup seconds (load, export, compile, warm-ups):", {s: round(v, 1) for s, v in setup.items()})
    common.save(args.out, {"rows": rows, "setup_s": {s: round(v, 1) for s, v in setup.items()}})


if __name__ == "__main__":
    main()
