"""ONNX export at bge-m3's size: the > 2 GB path (external weights), export time, memory, speed and agreement.

    python bench/export_large.py --out out/export_large.json

Builds XLM-RoBERTa with BAAI/bge-m3's config numbers (24 layers, 1024 hidden, 16 heads, 250,002 vocabulary:
568M parameters, 2.27 GB in fp32) and random weights, wrapped as bge-m3 is (CLS pooling + normalisation), with
a small tokenizer trained on the bundled sample (the real one does not travel). Then, for ``onnx`` and
``onnx-int8``: ``koembed.models.export.export_model`` (time, files, sizes, cosine to the fp32 torch model), and
encoding speed of ``--corpus`` (the bundled sample's 48 passages, or the first 48 KorQuAD held-out paragraphs:
long passages) at ``--max-length`` for torch fp32, torch bf16, both exports, OpenVINO fp32 and int8 on the fp32
export (issue 24) and the default (``auto``), every setting loaded first and timed in interleaved rounds (best of
``--repeats``), with each setting's cosine to torch fp32 on the timed passages. Peak RSS is reported for the whole
process (it includes every step before it).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from gpu_check import BGE_M3, TINY  # same config numbers as the GPU measurement


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--corpus", choices=("sample", "korquad"), default="sample")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="a tiny XLM-R instead (checks the script in seconds)")
    parser.add_argument("--settings", default="torch fp32,torch bf16,onnx,onnx-int8,openvino,openvino-int8,auto",
                        help="comma-separated, of those")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    from koembed.data import load_retrieval_set
    from koembed.models import encode, load_model
    from koembed.models.export import export_model
    from koembed.models.testing import make_tiny_xlmr

    scratch = Path(tempfile.mkdtemp(prefix="export-large-"))
    texts = list(load_retrieval_set().corpus.values())
    tokenizer = AutoTokenizer.from_pretrained(str(make_tiny_xlmr(scratch / "tiny")))
    torch.manual_seed(0)
    encoder = XLMRobertaModel(XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                                **(TINY if args.tiny else BGE_M3)))
    encoder.save_pretrained(scratch / "bge-m3-random")
    tokenizer.save_pretrained(scratch / "bge-m3-random")
    del encoder
    params = sum(p.numel() for p in load_model(str(scratch / "bge-m3-random")).parameters())
    rows: list[dict] = [{"step": "model", "parameters": params, "peak_rss_mb": peak_mb()}]
    print(json.dumps(rows[-1]), flush=True)
    for backend in ("onnx", "onnx-int8"):
        start = time.perf_counter()
        report = export_model(str(scratch / "bge-m3-random"), scratch / backend, backend=backend, check_texts=texts)
        rows.append({"step": f"export {backend}", "seconds": round(time.perf_counter() - start, 1),
                     "files_mb": {k: round(v / 2**20, 1) for k, v in report["files"].items()},
                     "check": report["check"], "peak_rss_mb": peak_mb()})
        print(json.dumps(rows[-1]), flush=True)
    import numpy as np

    timed = texts if args.corpus == "sample" else list(
        load_retrieval_set(common.KORQUAD, split="test").corpus.values())[:48]
    settings = {"torch fp32": ("bge-m3-random", {"backend": "torch", "precision": "fp32"}),
                "torch bf16": ("bge-m3-random", {"backend": "torch", "precision": "bf16"}),
                "onnx": ("onnx", {}), "onnx-int8": ("onnx-int8", {}),
                "openvino": ("onnx", {"backend": "openvino"}), "openvino-int8": ("onnx", {"backend": "openvino-int8"}),
                "auto": ("bge-m3-random", {})}
    chosen = [s for s in args.settings.split(",") if s]
    models = {}
    for label in chosen:
        name, kwargs = settings[label]
        models[label] = load_model(str(scratch / name), max_seq_length=args.max_length, **kwargs)
        encode(models[label], timed[:8], show_progress=False)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in chosen}
    vectors = {}
    for _ in range(args.repeats):  # interleaved: every setting once per round
        for label, model in models.items():
            start = time.perf_counter()
            vectors[label] = encode(model, timed, batch_size=16, show_progress=False)
            times[label].append(time.perf_counter() - start)
    reference = vectors.get("torch fp32")
    for label in chosen:
        best = min(times[label])
        row = {"step": f"encode {label}", "corpus": args.corpus, "max_length": args.max_length,
               "passages": len(timed), "passages_per_s": round(len(timed) / best, 2),
               "resolved": getattr(models[label], "backend", "torch"), "threads": torch.get_num_threads(),
               "peak_rss_mb": peak_mb()}
        if reference is not None:
            cosine = np.sum(vectors[label] * reference, axis=1)
            row.update(cosine_mean=round(float(cosine.mean()), 5), cosine_min=round(float(cosine.min()), 5),
                       vs_torch_fp32=round(min(times["torch fp32"]) / best, 2))
        rows.append(row)
        print(json.dumps(row), flush=True)
    common.save(args.out, rows)
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
