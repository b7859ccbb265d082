"""The model card (README.md) of a trained model, in the style of the BGE-m3-ko card: YAML metadata with a
model-index, the architecture, usage, training hyperparameters and data, and the evaluation tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from koembed.evaluation.metrics.tables import autorag_markdown, ir_markdown, suites_note
from koembed.files import atomic_open
from koembed.models.static import describe_static


def _model_index(name: str, dataset: str, metrics: dict[str, float]) -> list[dict[str, Any]]:
    return [{"name": name, "results": [{
        "task": {"type": "information-retrieval", "name": "Information Retrieval"},
        "dataset": {"name": dataset, "type": dataset},
        "metrics": [{"type": k, "value": round(v, 4), "name": k} for k, v in metrics.items()],
    }]}]


def _architecture(model_dir: Path, cross_encoder: bool = False) -> tuple[str, dict[str, Any] | None]:
    """The model as sentence-transformers prints it, and what it is if it is a static model."""
    try:
        from sentence_transformers import CrossEncoder, SentenceTransformer

        if cross_encoder:
            return str(CrossEncoder(str(model_dir), device="cpu")), None
        model = SentenceTransformer(str(model_dir), device="cpu")
        return str(model), describe_static(model)
    except Exception as exc:  # the card must still be written
        return f"(could not load the model to print it: {exc})", None


def _what_it_is(base: str, static: dict[str, Any] | None, trained: bool, kind: str) -> list[str]:
    if static is None:
        return [f"A Korean {kind} fine-tuned from `{base}` with koembed."]
    origin = (f"fine-tuned from `{base}`" if base not in ("unknown", None) and trained
              else f"distilled from `{base}` with model2vec" if base not in ("unknown", None)
              else "trained from random vectors")
    return [f"A **static** Korean embedding model ({origin}) made with koembed: a vector per word piece "
            f"({static['vocab_size']:,} pieces, {static['tokenizer']} tokenizer, {static['dim']} dimensions); a text's "
            "embedding is the mean of its pieces' vectors, L2-normalised. No attention and no length limit: it "
            "encodes thousands of passages a second on a CPU, and word order is ignored, so much of what it "
            "matches is word overlap. Compare it with its untrained baseline (same tokenizer, random vectors) "
            "before reading its scores as semantics."]


def render_card(model_dir: Path, cfg: dict[str, Any] | None, training: dict[str, Any] | None,
                bench: dict[str, Any] | None) -> str:
    name = model_dir.resolve().name if model_dir.name != "final" else model_dir.resolve().parent.name
    base = (cfg or {}).get("model", {}).get("base") or "unknown"
    cross_encoder = (cfg or {}).get("model", {}).get("type") == "cross_encoder"
    architecture, static = _architecture(model_dir, cross_encoder)
    metrics = (training or {}).get("metrics") or {}
    eval_name = ((training or {}).get("eval") or {}).get("path") or "evaluation set"
    meta: dict[str, Any] = {
        "language": ["ko"], "library_name": "sentence-transformers", "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction", "koembed"],
        "base_model": base,
    }
    if static is not None:
        meta["tags"].append("static-embeddings")
    if metrics:
        meta["model-index"] = _model_index(name, Path(eval_name).name, metrics)
    if cross_encoder:
        meta.update(pipeline_tag="text-ranking", tags=["sentence-transformers", "cross-encoder", "reranker",
                                                       "koembed"])
        usage = ["from sentence_transformers import CrossEncoder", "", f'model = CrossEncoder("{name}")',
                 'print(model.predict([("전세 보증금은 언제 돌려받나요?", '
                 '"임대차 계약이 끝나면 임대인은 보증금을 반환해야 합니다.")]))']
    else:
        usage = ["from sentence_transformers import SentenceTransformer", "", f'model = SentenceTransformer("{name}")',
                 'queries = model.encode_query(["전세 보증금은 언제 돌려받나요?"])',
                 'passages = model.encode_document(["임대차 계약이 끝나면 임대인은 보증금을 반환해야 합니다."])',
                 "print(model.similarity(queries, passages))"]
    kind = "reranker (cross-encoder)" if cross_encoder else "retrieval embedding model"
    lines = ["---", yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(), "---", "",
             f"# {name}", "", *_what_it_is(base, static, training is not None, kind), "",
             "## Model", "", "```", architecture, "```", "",
             "## Usage", "", "```python", *usage, "```", ""]
    prompts = (training or {}).get("prompts")
    if prompts:
        shown = {role: f"`{text}`" if text else "(none)" for role, text in prompts.items()}
        lines += ["## Prompts", "", "Put before every text when encoding (saved in "
                  "`config_sentence_transformers.json`, so koembed applies them):", "", "| texts | prompt |",
                  "|---|---|", f"| queries | {shown.get('query', '(none)')} |",
                  f"| passages | {shown.get('passage', '(none)')} |", ""]
    if cfg and cfg.get("train"):
        train, loss = cfg.get("train", {}), cfg.get("loss", {})
        lines += ["## Training", "", "| hyperparameter | value |", "|---|---|"]
        model_rows = ([("static", cfg.get("model", {}).get("static") or f"continued from {base}")] if static else
                      [("max_seq_length", cfg.get("model", {}).get("max_seq_length")),
                       ("pooling", cfg.get("model", {}).get("pooling"))])
        for key, value in [("loss", loss.get("name")), ("mini_batch_size", loss.get("mini_batch_size")),
                           ("matryoshka_dims", loss.get("matryoshka_dims") or "-")] + model_rows + list(train.items()):
            lines.append(f"| {key} | {value} |")
        lines.append("")
    if training:
        lines += ["### Data", "", "| source | pairs |", "|---|---|"]
        for src in training.get("sources", []):
            label = src.get("path") or src.get("name")
            extra = f" (split {src['split']})" if src.get("split") else ""
            lines.append(f"| {src['type']}: `{label}`{extra} | {src.get('pairs')} |")
        lines += ["", f"{training.get('examples')} training pairs after removing "
                      f"{training.get('dropped_duplicates')} duplicates; steps: {training.get('global_step')}.", ""]
    if metrics:
        lines += [f"## Evaluation: `{eval_name}`", "", "Sentence-transformers' InformationRetrievalEvaluator "
                  "definitions.", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items()]
        lines.append("")
    if bench:
        ds = bench.get("dataset", {})
        lines += [f"## Benchmark: {ds.get('name')} ({ds.get('queries')} queries, {ds.get('corpus')} passages)", ""]
        for k in sorted({k for r in bench["results"] for k in r["autorag"]}, key=int):
            lines += [f"### AutoRAG metrics, top-k = {k}", "", *autorag_markdown(bench["results"], int(k)), ""]
        lines += ["### IR metrics", "", *ir_markdown({r["retriever"]: r["ir"] for r in bench["results"]}), "",
                  suites_note(), ""]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, cfg: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
                     bench: dict[str, Any] | None = None) -> Path:
    """Write ``model_dir/README.md``. ``training`` defaults to ``koembed_training.json`` in the folder."""
    model_dir = Path(model_dir)
    record = model_dir / "koembed_training.json"
    if training is None and record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        cfg = cfg or saved.get("config")
        training = saved
    path = model_dir / "README.md"
    with atomic_open(path) as handle:
        handle.write(render_card(model_dir, cfg, training, bench))
    return path
