"""Put a trained static-ko into the package with its model card: the second half of ``make static-ko``.

    koembed train configs/static-ko.yaml --set output_dir=out/static-ko
    python bench/static_ko.py --model out/static-ko/final

Copies the trained model's files (weights, tokenizer, module configs, the training record) into
``src/koembed/models/static_ko`` and writes its model card (README.md): what it is, the data and attribution, the
licence of the weights, the command that regenerates it, the sha256 of its weights, and its metrics next to the
untrained baseline (same tokenizer, random vectors) on the held-out sets. The sample's numbers are checked by the
test suite against the shipped weights. Nothing of ../shared/data is copied: only the trained weights and tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "koembed" / "models" / "static_ko"
FILES = ("model.safetensors", "tokenizer.json", "modules.json", "config_sentence_transformers.json",
         "koembed_training.json", "1_Normalize/config.json")
OPTIONAL = ("koembed_spacing.json",)  # a model that respaces its texts (model.static.spacing)
MAX_BYTES = 20 * 2**20
SETS = {"koembed-sample (bundled, 96 queries)": "sample", "KorQuAD 1.0 held-out 40 articles (1,814 q)": "korquad-test",
        "MS MARCO-ko test half (3,490 q)": "msmarco-ko-test"}

CARD = """---
language: [ko]
library_name: sentence-transformers
pipeline_tag: sentence-similarity
license: cc-by-sa-4.0
tags: [sentence-transformers, static-embeddings, koembed]
datasets: [KorSTS, KorNLI, KLUE]
---

# static-ko: koembed's bundled Korean static embedding model

A **static** embedding model: a vector per word piece ({vocab:,} WordPiece pieces learned from the training
sentences, NFKC + lower-case, so Hangul syllables stay whole), {dim} dimensions; a text's embedding is the mean of
its pieces' vectors, L2-normalised (sentence-transformers `StaticEmbedding` + `Normalize`). No attention and no
length limit: it encodes thousands of passages a second on a CPU. Word order is ignored and much of what it matches
is word overlap: its scores below stand next to its **untrained baseline** (the same tokenizer with random vectors,
i.e. a random projection of the bag of word pieces), and its place is beside BM25 in a tuned fusion, not instead of
it. It is the dense half of `make bench` (`dense:static-ko`).
{spacing}

```python
import koembed
model = koembed.load_model("static-ko")      # this folder, shipped inside the koembed package
vectors = koembed.encode(model, ["전세 보증금은 언제 돌려받나요?"])
```

## Training data and attribution

Trained only on these Korean sets, all under CC BY-SA 4.0:

- **KorSTS** (Kakao Brain, `kakaobrain/kor-nlu-datasets`): train and dev sentence pairs with a gold score >= 3.5.
- **KorNLI** (Kakao Brain, `kakaobrain/kor-nlu-datasets`), its XNLI part (dev and test): entailment pairs.
- **KLUE** (the KLUE benchmark, `KLUE-benchmark/KLUE`): NLI dev entailment pairs and STS dev pairs with label >= 3.5.

Ham et al. (2020), *KorNLI and KorSTS: New Benchmark Datasets for Korean Natural Language Understanding*; Park et
al. (2021), *KLUE: Korean Language Understanding Evaluation*. {pairs:,} training pairs after removing duplicates.
No text of these sets is distributed here: only the trained vectors and the tokenizer's vocabulary.

## Licence

The weights and tokenizer in this folder are derived from CC BY-SA 4.0 data and are released under the
**Creative Commons Attribution-ShareAlike 4.0 International** licence
(https://creativecommons.org/licenses/by-sa/4.0/), with the attribution above. (koembed's code is Apache-2.0.)

## How it was made, and how to make it again

```bash
make static-ko    # koembed train configs/static-ko.yaml, then python bench/static_ko.py (needs ../shared/data)
```

Recipe (`configs/static-ko.yaml`): MultipleNegativesRankingLoss (in-batch negatives) inside MatryoshkaLoss
({matryoshka}), batch 512 without duplicates in a batch, learning rate 0.2 with 10% warm-up and linear decay,
10 epochs ({steps} steps), seed 42, vectors saved in float16. Deterministic: the tokenizer learning and the training
give the same bytes on every run (checked on this machine: two runs, identical files). sha256 of the files:

| file | sha256 |
|---|---|
{hashes}

## Metrics (the numbers it must reproduce)

IR suite (sentence-transformers' InformationRetrievalEvaluator definitions, cosine), question -> passage retrieval;
none of these sets was used for training, nor for choosing the recipe (the vocabulary size was chosen on KorQuAD's
train-side articles and MS MARCO-ko's train half). `koembed eval --model static-ko [--data ...]` prints them.

| set | static-ko accuracy@1 | static-ko ndcg@10 | untrained accuracy@1 | untrained ndcg@10 |
|---|---|---|---|---|
{retrieval}

KorSTS test (1,379 sentence pairs), Spearman correlation of cosine with the gold score: **{sts_trained:.4f}**
(untrained baseline {sts_untrained:.4f}).
"""


SPACING = {"kiwi": """
**Spacing.** Before its tokenizer, every text (in training and in encoding alike) is respaced with Kiwi
(`Kiwi.space(text, reset_whitespace=True)`: all spaces removed, Kiwi's put back), so a query typed without spaces,
or with spaces in odd places, reads as the same text as the query typed with them. The class in `modules.json` is
`koembed.models.spacing.SpacedStaticEmbedding` and `koembed_spacing.json` records the spacing: koembed loads it as
is; plain sentence-transformers needs `trust_remote_code=True` (with koembed installed) and refuses it otherwise.
Kiwi is far slower than the table lookup, so encoding costs Kiwi's time (docs/BENCHMARKS.md).
"""}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the trained model folder (output_dir/final)")
    parser.add_argument("--package", type=Path, default=PACKAGE)
    args = parser.parse_args()

    from koembed.evaluation.runner import evaluate_model
    from koembed.models import EncodeOptions, load_model
    from koembed.models.static import describe_static, untrained_like

    record = json.loads((args.model / "koembed_training.json").read_text(encoding="utf-8"))
    shutil.rmtree(args.package, ignore_errors=True)
    files = FILES + tuple(name for name in OPTIONAL if (args.model / name).is_file())
    for name in files:
        (args.package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.model / name, args.package / name)
    size = sum((args.package / name).stat().st_size for name in files)
    if size > MAX_BYTES:
        raise SystemExit(f"{args.package}: {size / 2**20:.1f} MB, over the 20 MB the package allows")
    model = load_model(str(args.package))
    info = describe_static(model)
    sets = common.load_sets(common.HELD_OUT_SETS)
    options = EncodeOptions(batch_size=256, show_progress=False)
    metrics = {}
    with tempfile.TemporaryDirectory() as scratch:
        untrained = untrained_like(model, seed=42)
        untrained.save(scratch)
        for label, name in (("trained", str(args.package)), ("untrained", scratch)):
            metrics[label] = {key: evaluate_model(sets[key], name, options) for key in SETS.values()}
            metrics[label]["korsts"] = common.korsts_spearman(load_model(name))
    retrieval = "\n".join(
        f"| {title} | {metrics['trained'][key]['cosine_accuracy@1']:.4f} | {metrics['trained'][key]['cosine_ndcg@10']:.4f}"
        f" | {metrics['untrained'][key]['cosine_accuracy@1']:.4f} | {metrics['untrained'][key]['cosine_ndcg@10']:.4f} |"
        for title, key in SETS.items())
    hashes = "\n".join(f"| `{name}` | `{sha256(args.package / name)}` |" for name in ("model.safetensors",
                                                                                       "tokenizer.json"))
    config = record["config"]
    card = CARD.format(spacing=SPACING.get(info["spacing"], ""), vocab=info["vocab_size"], dim=info["dim"], pairs=record["examples"], steps=record["global_step"],
                       matryoshka=", ".join(map(str, config["loss"]["matryoshka_dims"])), hashes=hashes,
                       retrieval=retrieval, sts_trained=metrics["trained"]["korsts"],
                       sts_untrained=metrics["untrained"]["korsts"])
    (args.package / "README.md").write_text(card, encoding="utf-8")
    summary = {"package": str(args.package), "megabytes": round(size / 2**20, 2), **info,
               "metrics": {label: {k: (v if isinstance(v, float) else {m: round(v[f"cosine_{m}"], 4)
                                                                     for m in ("accuracy@1", "ndcg@10")})
                                   for k, v in rows.items()} for label, rows in metrics.items()}}
    common.save(args.out, summary)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
