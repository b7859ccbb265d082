"""Query variants (issue 23): each transformation against hand-computed cases, determinism, and
``koembed bench --query-variants`` on the bundled sample (one table, and a ``variants`` entry in results.json)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.evaluation.variants import KINDS, drop_final, dubeolsik_keys, make_variants, variant_sets


@pytest.mark.parametrize("text, keys", [("가고", "rkrh"), ("한국", "gksrnr"), ("읽다", "dlfrek"),
                                        ("왜", "dho"), ("뷁", "qnpfr"), ("쌰", "Ti"), ("값", "rkqt"), ("KTX 표", "KTX vy")])
def test_dubeolsik_keys_by_hand(text, keys):
    assert dubeolsik_keys(text) == keys


def test_drop_final_by_hand():
    assert [drop_final(c) for c in "각한값힣가a"] == ["가", "하", "가", "히", "가", "a"]


def test_nospace_and_unchangeable_queries():
    assert make_variants(["서울 시청  위치", "KTX", ""], "nospace", 0) == ["서울시청위치", "KTX", ""]
    assert make_variants(["가나", "ab"], "jamo", 0) == ["가나", "ab"]  # no final consonant: as written
    assert make_variants(["아아", "a"], "swap", 0) == ["아아", "a"]  # nothing to swap
    assert make_variants(["abc"], "keyboard", 0) == ["abc"]


def test_each_variant_changes_what_it_says_and_is_seeded(sample):
    queries = list(sample.queries.values())
    for kind in KINDS:
        once, again = make_variants(queries, kind, 7), make_variants(queries, kind, 7)
        assert once == again and len(once) == len(queries)
        assert make_variants(queries[3:], kind, 7) != once[3:] or kind == "nospace"  # positions seed the draws
    for q, v in zip(queries, make_variants(queries, "randspace", 1)):
        assert v.replace(" ", "") == q.replace(" ", "") and v.count(" ") == len(q.split()) - 1
    for q, v in zip(queries, make_variants(queries, "swap", 1)):
        diff = [i for i, (a, b) in enumerate(zip(q, v)) if a != b]
        assert len(diff) == 2 and diff[1] == diff[0] + 1 and (q[diff[0]], q[diff[1]]) == (v[diff[1]], v[diff[0]])
    for q, v in zip(queries, make_variants(queries, "jamo", 1)):
        diff = [i for i, (a, b) in enumerate(zip(q, v)) if a != b]
        assert len(diff) == 1 and drop_final(q[diff[0]]) == v[diff[0]] != q[diff[0]]
    for q, v in zip(queries, make_variants(queries, "keyboard", 1)):
        changed = [(a, b) for a, b in zip(q.split(" "), v.split(" ")) if a != b]
        assert len(changed) == 1 and dubeolsik_keys(changed[0][0]) == changed[0][1]
    with pytest.raises(ValueError, match="unknown query variant"):
        make_variants(queries, "upper", 0)


def test_variant_sets_keep_corpus_and_judgments(sample):
    (nospace,) = variant_sets(sample, ["nospace"], 0)
    assert nospace.name == f"{sample.name}~nospace" and nospace.corpus == sample.corpus
    assert nospace.relevant == sample.relevant and list(nospace.queries) == list(sample.queries)
    assert all(" " not in q for q in nospace.queries.values())


def test_bench_query_variants_on_the_sample(tmp_path):
    from koembed.data import load_retrieval_set
    from koembed.evaluation.runner import run_bench
    from tests.helpers import QUIET

    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["bench", "--data", "sample", "-r", "bm25", "-r", "bm25-char",
                                      "--query-variants", "nospace,jamo", "--variant-seed", "3", "--out", str(out),
                                      "-q"])
    assert result.exit_code == 0, result.output
    assert "Query variants" in result.output and "nospace" in result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["variants"]["seed"] == 3 and set(document["variants"]) == {"seed", "nospace", "jamo"}
    (jamo,) = variant_sets(load_retrieval_set(), ["jamo"], 3)
    want = {r.retriever: r.ir for r in run_bench(jamo, ["bm25", "bm25-char"], (1, 3, 5, 10, 50), options=QUIET)}
    got = {r["retriever"]: r["ir"] for r in document["variants"]["jamo"]}
    assert got.keys() == want.keys() and all(got[r] == pytest.approx(want[r]) for r in want)
    bad = CliRunner().invoke(app, ["bench", "--data", "sample", "-r", "bm25", "--query-variants", "upper"])
    assert bad.exit_code == 2 and "--query-variants" in bad.output
