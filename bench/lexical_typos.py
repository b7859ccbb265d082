"""Typo tolerance on the lexical side (issue 23): candidates for ``bm25-phrase`` measured on every query variant of
koembed.evaluation.variants (``nospace``, ``randspace``, ``swap``, ``jamo``, ``keyboard``) and as written.

    python bench/lexical_typos.py --sets dev --out out/lexical_typos_dev.json        # fit / choose
    python bench/lexical_typos.py --sets held-out --candidates base,NAME --out out/lexical_typos_test.json

Candidates, all query-side (passages are well written and indexed as today):

- ``char=W``: the ``char`` field's weight in bm25-phrase (0.5 today), the field that needs no analysis and so
  survives a swapped or truncated syllable;
- ``typos=SET``: Kiwi's typo-correcting analysis of the query (kiwipiepy >= 0.23 takes ``typos`` and
  ``typo_cost_threshold`` per ``tokenize`` call, so the one cached Kiwi serves both sides: no second model);
- ``keys``: a query-side expansion (:func:`koembed.lexical.keyboard.with_hangul_readings`): each Latin word that
  reads as whole 두벌식 syllables (``rkrh`` -> 가고) is followed by its Hangul reading (the Latin word stays, so
  an English term still matches). ``base`` reads nothing: this script scores the fields itself, so ``base`` is
  bm25-phrase before the expansion and ``keys`` what BM25Retriever now does.

The corpus is analysed once per set; each (query form, query analysis) is analysed once, and every char weight is
a different weighted sum of the same four field scores (exactly what :meth:`BM25Retriever.search` ranks by).
Fit on development sets (KorQuAD --split train, MS MARCO-ko train half), report held-out ones; the rule of issue
23: keep a candidate only if it helps every variant set and costs nothing on the queries as written.
"""

from __future__ import annotations

import json
import time

import common

from koembed.evaluation.runner import score_run
from koembed.evaluation.variants import KINDS, make_variants
from koembed.lexical import BM25Retriever
from koembed.lexical.bm25 import PHRASE
from koembed.lexical.fields import field_tokens
from koembed.ranking import best_rows

SEED = 0
METRICS = ("accuracy@1", "ndcg@10")
CHAR_WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0)
# (query analysis: Kiwi typos set or None, typo_cost_threshold, keyboard expansion)
ANALYSES = {"base": (None, 2.5, False), "typos=basic": ("basic", 2.5, False),
            "typos=continual": ("continual", 2.5, False),
            "typos=basic_with_continual": ("basic_with_continual", 2.5, False),
            "typos=basic_with_continual@5": ("basic_with_continual", 5.0, False),
            "typos=lengthening": ("lengthening", 2.5, False), "keys": (None, 2.5, True)}


def analyse_queries(bm25: BM25Retriever, texts: list[str], typos: str | None, threshold: float, keys: bool
                    ) -> tuple[list[str], list[list[str]]]:
    """(the query texts the fields see, their content morphemes) under one query analysis."""
    from koembed.lexical.keyboard import with_hangul_readings

    if keys:
        texts = [with_hangul_readings(t) for t in texts]
    tok = bm25.tokenizer
    analysed = tok.kiwi.tokenize(texts, typos=typos, typo_cost_threshold=threshold) if typos else \
        tok.kiwi.tokenize(texts)
    return texts, [tok._tokens(a) for a in analysed]


def run_set(rs, forms: list[str], analyses: dict, char_weights: tuple[float, ...]) -> list[dict]:
    import numpy as np

    bm25 = BM25Retriever(PHRASE, show_progress=False)
    start = time.perf_counter()
    bm25.fit(rs.doc_ids, list(rs.corpus.values()))
    print(f"{rs.name}: fitted {len(rs.corpus)} passages in {time.perf_counter() - start:.0f} s", flush=True)
    qids = rs.query_ids
    written = [rs.queries[q] for q in qids]
    fields = PHRASE.fields
    weights = np.array([[PHRASE.weights[f] if f != "char" else w for f in fields] for w in char_weights])
    rows_out = []
    for form in forms:
        texts = written if form == "as written" else make_variants(written, form, SEED)
        for name, (typos, threshold, keys) in analyses.items():
            start = time.perf_counter()
            seen, tokens = analyse_queries(bm25, texts, typos, threshold, keys)
            analyse_s = time.perf_counter() - start
            hits: list[dict] = [{} for _ in char_weights]
            for qid, text, tok in zip(qids, seen, tokens):
                scores = np.stack([bm25._indexes[f].scores(field_tokens(f, tok, text)) for f in fields])
                rows = (scores > 0).any(axis=0).nonzero()[0]
                combined = weights @ scores[:, rows]
                for j in range(len(char_weights)):
                    top = best_rows(combined[j], bm25._rank, 10, rows=rows)
                    hits[j][qid] = [(bm25._doc_ids[rows[t]], float(combined[j][t])) for t in top]
            changed = sum(a != b for a, b in zip(tokens, analyse_queries(bm25, texts, None, 2.5, False)[1])) \
                if name != "base" else 0
            for w, h in zip(char_weights, hits):
                ir, _ = score_run(rs, h, ())
                row = {"set": rs.name, "form": form, "analysis": name, "char": w,
                       **{m: round(ir[m], 4) for m in METRICS}, "queries_changed": changed,
                       "analyse_ms_per_query": round(1000 * analyse_s / len(qids), 3)}
                rows_out.append(row)
            for row in rows_out[-len(char_weights):]:
                print(json.dumps(row, ensure_ascii=False), flush=True)
    return rows_out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--sets", choices=("dev", "held-out"), default="dev")
    parser.add_argument("--analyses", default=",".join(ANALYSES), help="comma-separated: " + ", ".join(ANALYSES))
    parser.add_argument("--char-weights", type=lambda s: tuple(float(v) for v in s.split(",")), default=CHAR_WEIGHTS)
    parser.add_argument("--forms", default="as written," + ",".join(KINDS))
    args = parser.parse_args()
    names = common.DEV_SETS if args.sets == "dev" else {k: v for k, v in common.HELD_OUT_SETS.items() if v[0]}
    analyses = {a: ANALYSES[a] for a in args.analyses.split(",")}
    rows = []
    for name, rs in common.load_sets(names).items():
        rows.extend(run_set(rs, args.forms.split(","), analyses, args.char_weights))
    common.save(args.out, {"seed": SEED, "rows": rows})
    common.print_markdown(["set", "form", "analysis", "char", *METRICS, "changed", "ms/query"],
                          [[r["set"], r["form"], r["analysis"], r["char"], *(r[m] for m in METRICS),
                            r["queries_changed"], r["analyse_ms_per_query"]] for r in rows])


if __name__ == "__main__":
    main()
