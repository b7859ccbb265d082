"""ONNX export at bge-m3's size: the > 2 GB path (external weights), export time, memory, speed and agreement.

    python bench/export_large.py --out out/export_large.json

Builds XLM-RoBERTa with BAAI/bge-m3's config numbers (24 layers, 1024 hidden, 16 heads, 250,002 vocabulary:
568M parameters, 2.27 GB in fp32) and random weights, wrapped as bge-m3 is (CLS pooling + normalisation), with
a small tokenizer trained on the bundled sample (the real one does not travel). Then, for ``onnx`` and
``onnx-int8``: ``koembed.models.export.export_model`` (time, files, sizes, cosine to the fp32 torch model), and
encoding speed of the bundled sample's 48 passages (max length 128) for torch fp32, torch bf16 and both exports.
Peak RSS is reported for the whole process (it includes every step before it).
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
from gpu_check import BGE_M3  # same config numbers as the GPU measurement


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--repeats", type=int, default=2)
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
    encoder = XLMRobertaModel(XLMRobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **BGE_M3))
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
    for label, name, kwargs in [("torch fp32", "bge-m3-random", {}),
                                ("torch bf16", "bge-m3-random", {"precision": "bf16"}),
                                ("onnx", "onnx", {}), ("onnx-int8", "onnx-int8", {})]:
        model = load_model(str(scratch / name), max_seq_length=128, **kwargs)
        encode(model, texts[:8], show_progress=False)  # warm-up
        best, _ = common.best_of(args.repeats, lambda m=model: encode(m, texts, batch_size=16, show_progress=False))
        rows.append({"step": f"encode {label}", "passages": len(texts), "passages_per_s": round(len(texts) / best, 2),
                     "threads": torch.get_num_threads(), "peak_rss_mb": peak_mb()})
        print(json.dumps(rows[-1]), flush=True)
        del model
    common.save(args.out, rows)
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
