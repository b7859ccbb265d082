"""What an index build costs besides Kiwi's analysis, stage by stage (issue 20: "everything but Kiwi <= 20%").

    python bench/build_rest.py --index /tmp/w/peers-big/synthetic-1m/bm25-phrase/index --docs 100000 \
        --work /tmp/w/buildrest --out out/build_rest_100k.json

Reads the first ``--docs`` passages (text and stored Kiwi tokens) of a kept index's ``passages.jsonl`` (read only),
then times ``build_index(model, ids, texts, out, tokens=tokens)`` into a new folder under ``--work`` with the
``bm25-phrase`` fields, as ``koembed index build`` runs it after Kiwi (bench/peer_systems.py ``_koembed_build``).
Stages are timed by wrapping the functions the build calls (their totals are wall times, nested stages
excluded from "other"): the model's import and load, the dense encoding, FAISS (construction, add, write), each
field's terms and segment arrays, saving the arrays (fsynced), passages.jsonl and the row table, checksums.
``--profile FILE`` writes cProfile stats of the build instead (slower; for finding hot spots).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
from peer_systems import peak_rss_mb

TIMES: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)  # process CPU seconds (all threads): less disturbed by other jobs


def timed(module: Any, name: str, stage: str | Callable[..., str]) -> None:
    """Replace ``module.name`` by a wrapper adding its wall time to ``TIMES[stage]`` and its CPU time to
    ``CPU[stage]`` (``stage`` may be computed from the call's arguments)."""
    inner = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            label = stage(*args, **kwargs) if callable(stage) else stage
            TIMES[label] += time.perf_counter() - start
            CPU[label] += time.process_time() - cpu

    setattr(module, name, wrapper)


def read_passages(index: Path, docs: int) -> tuple[list[str], list[str], list[list[str]]]:
    """The first ``docs`` rows of the index's current ``passages.jsonl``: ids, texts, Kiwi tokens."""
    manifest = json.loads((index / "manifest.json").read_text(encoding="utf-8"))
    ids, texts, tokens = [], [], []
    with open(index / manifest["version_dir"] / "passages.jsonl", "rb") as handle:
        for line, _ in zip(handle, range(docs)):
            row = json.loads(line)
            ids.append(row["id"])
            texts.append(row["text"])
            tokens.append(row["tokens"])
    return ids, texts, tokens


def instrument(fields: tuple[str, ...]) -> None:
    """Wrap the stages' functions (where the build looks them up) with timers. Each field's arrays are built in
    ``fields`` order, one call per field, which names their stage."""
    import itertools

    import faiss

    from koembed.index import bm25_store, build, versions
    from koembed.lexical import segments

    timed(build, "load_model", "model import + load")
    timed(build, "embed", "dense encoding")
    timed(build, "model_record", "model record (probe)")
    timed(build, "new_faiss_index", "faiss construct")
    timed(faiss, "write_index", "faiss write")
    timed(versions, "write_jsonl", "passages.jsonl")
    timed(versions, "write_rows", "row table")
    timed(versions, "write_json", "small json")
    timed(versions, "checksums", "checksums (version files)")
    timed(bm25_store, "checksums", "checksums (segments)")
    timed(bm25_store, "write_segment", "segments total")
    if hasattr(bm25_store, "merge_segments"):  # a build's chunks merged into one segment (since 0c6ac21)
        timed(bm25_store, "merge_segments", "segments merge")
    timed(segments, "_save", lambda path, a: f"save {path.name.split('.')[2]}")
    order = itertools.cycle(fields)
    if hasattr(segments, "_field_arrays"):  # the string construction (before koembed.lexical.postings)
        timed(segments, "field_tokens", lambda field, *a: f"terms {field}")
        timed(segments, "_field_arrays", lambda *a, **k: f"arrays {next(order)}")
    else:
        from koembed.lexical import postings

        timed(postings._Morphemes, "__init__", "terms morpheme ids")
        timed(postings._Morphemes, "terms", lambda self, field: f"terms {field}")
        timed(postings, "_char_terms", "terms char")
        timed(postings, "_postings", lambda *a, **k: f"arrays {next(order)}")


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--index", type=Path, required=True, help="a kept index to read passages from (read only)")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/w/buildrest"))
    parser.add_argument("--model", default="static-ko")
    parser.add_argument("--spec", default="bm25-phrase")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here instead of stage timers")
    parser.add_argument("--keep", action="store_true", help="keep the built index")
    args = parser.parse_args()

    start = time.perf_counter()
    ids, texts, tokens = read_passages(args.index, args.docs)
    read_s = time.perf_counter() - start
    from koembed.index import IndexParams, build_index
    from koembed.lexical import lexical_config

    out = args.work / f"index-{len(ids)}"
    shutil.rmtree(out, ignore_errors=True)
    params = IndexParams(lexical=lexical_config(args.spec, required=True))
    if args.profile is None:
        instrument(params.lexical.fields)
    build_start, build_cpu = time.perf_counter(), time.process_time()
    if args.profile is not None:
        import cProfile

        cProfile.runctx("build_index(args.model, ids, texts, out, params=params, tokens=tokens)", globals(),
                        {"build_index": build_index, "args": args, "ids": ids, "texts": texts, "out": out,
                         "params": params, "tokens": tokens}, str(args.profile))
    else:
        build_index(args.model, ids, texts, out, params=params, tokens=tokens)
    total, total_cpu = time.perf_counter() - build_start, time.process_time() - build_cpu
    nested = {"terms", "arrays", "save"}

    def breakdown(times: dict[str, float], whole: float) -> dict[str, float]:
        """Each stage, "segments other" (segments total less its nested stages) and "other" (the rest)."""
        table = {k: round(v, 2) for k, v in sorted(times.items())}
        if "segments total" in times:
            table["segments other"] = round(times["segments total"] - sum(
                v for k, v in times.items() if k.split(" ")[0] in nested), 2)
        table["other"] = round(whole - sum(v for k, v in times.items() if k.split(" ")[0] not in nested), 2)
        return table

    stages, cpu_stages = breakdown(TIMES, total), breakdown(CPU, total_cpu)
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2 ** 20
    result = {"docs": len(ids), "read_s": round(read_s, 2), "build_s": round(total, 2),
              "build_cpu_s": round(total_cpu, 2), "stages_s": stages, "stages_cpu_s": cpu_stages,
              "index_mb": round(size_mb, 1), "peak_rss_mb": peak_rss_mb()}
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    common.save(args.out, result)
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    sys.exit(main())
