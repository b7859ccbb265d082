"""Hard-negative mining: chosen ranks against BM25's own ranking, positives never negatives, the margin, the
rank window, a positive outside the corpus and the hits, the CLI's output and its failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.data.pairs import Pair, read_pairs
from koembed.lexical import BM25Retriever
from koembed.training.mine import mine_hard_negatives
from tests.helpers import QUIET, FixedModel

# Our own sentences. d02 is d01 with one word changed (임차인 -> 임대인): a near-duplicate of the positive.
CORPUS = {
    "d01": "전세 보증금을 돌려받지 못한 임차인은 법원에 보증금 반환 소송을 제기할 수 있다.",
    "d02": "전세 보증금을 돌려받지 못한 임대인은 법원에 보증금 반환 소송을 제기할 수 있다.",
    "d03": "보증금 반환 소송은 지급명령 신청보다 시간이 오래 걸린다.",
    "d04": "전세 계약을 갱신할 때 보증금 인상률은 5퍼센트로 제한된다.",
    "d05": "임차권등기명령을 신청하면 이사를 가도 대항력이 유지된다.",
    "d06": "소송 절차는 소장 제출, 변론, 판결 순서로 진행된다.",
    "d07": "전세 사기를 피하려면 등기부등본을 반드시 확인해야 한다.",
    "d08": "보증금 보험에 가입하면 반환을 보증기관이 책임진다.",
    "d09": "월세 세입자도 확정일자를 받아 두는 것이 좋다.",
    "d10": "민사 소송 비용은 패소한 쪽이 부담하는 것이 원칙이다.",
    "d11": "정기예금을 만기 전에 해지하면 중도해지이율이 적용된다.",
    "d12": "김치찌개는 돼지고기와 묵은지를 넣고 끓인다.",
    "d13": "전세 대출 이자는 연말정산에서 소득공제를 받을 수 있다.",
    "d14": "지급명령은 상대방이 이의를 제기하면 소송으로 넘어간다.",
}
QUERY = "전세 보증금 반환 소송 절차"


@pytest.fixture(scope="module")
def ranking():
    """BM25's full ranking of CORPUS for a query, computed apart from the miner: [(doc_id, score)], best first."""
    bm25 = BM25Retriever(show_progress=False)
    bm25.fit(list(CORPUS), list(CORPUS.values()))
    return lambda query: bm25.search([query], len(CORPUS))[0]


def expected(hits, window, positives, n, threshold=None):
    """The rule, restated: ranks a..b, not a positive, a shared term (score > 0), within the margin, first n."""
    a, b = window
    return tuple(CORPUS[d] for d, s in hits[a - 1: b]
                 if d not in positives and s > 0 and (threshold is None or s <= threshold))[:n]


def mine(pairs, **kw):
    kw.setdefault("corpus", CORPUS)
    return mine_hard_negatives(pairs, options=QUIET, **kw)


def test_negatives_are_the_expected_ranks_and_never_the_positive(ranking):
    hits = ranking(QUERY)
    assert hits[0][0] == "d01"  # the positive ranks first, inside the window below
    out, stats = mine([Pair(QUERY, CORPUS["d01"], ("old negative",))], rank_range=(1, 9), negatives=4, margin=None)
    want = expected(hits, (1, 9), {"d01"}, 4)
    assert out[0].negatives == want and len(want) == 4
    assert CORPUS["d01"] not in out[0].negatives  # the input negative is replaced too
    assert stats["excluded_positives"] == 1 and stats["with_full_negatives"] == 1 and stats["with_fewer"] == 0


def test_margin_drops_the_near_duplicate_and_none_keeps_it(ranking):
    hits = ranking(QUERY)
    scores = dict(hits)
    assert scores["d02"] > 0.95 * scores["d01"]  # one word changed: scored like the positive
    pair = [Pair(QUERY, CORPUS["d01"])]
    kept, _ = mine(pair, rank_range=(1, 9), negatives=4, margin=None)
    dropped, stats = mine(pair, rank_range=(1, 9), negatives=4, margin=0.95)
    assert CORPUS["d02"] in kept[0].negatives and CORPUS["d02"] not in dropped[0].negatives
    threshold = 0.95 * scores["d01"]
    assert dropped[0].negatives == expected(hits, (1, 9), {"d01"}, 4, threshold)
    assert stats["dropped_by_margin"] == sum(1 for d, s in hits[:9] if d != "d01" and s > threshold)


def test_rank_window_is_respected(ranking):
    hits = ranking(QUERY)
    rank = {d: i for i, (d, _) in enumerate(hits, start=1)}
    id_of = {text: d for d, text in CORPUS.items()}
    out, stats = mine([Pair(QUERY, CORPUS["d01"])], rank_range=(4, 6), negatives=5, margin=None)
    assert out[0].negatives == expected(hits, (4, 6), {"d01"}, 5)
    assert [rank[id_of[t]] for t in out[0].negatives] == [4, 5, 6]
    assert stats["with_fewer"] == 1 and stats["excluded_positives"] == 0  # the positive (rank 1) is outside


def test_every_positive_of_a_repeated_query_is_excluded(ranking):
    pairs = [Pair(QUERY, CORPUS["d01"]), Pair(QUERY, " " + CORPUS["d02"] + "\n")]  # matched after strip
    out, stats = mine(pairs, rank_range=(1, 6), negatives=3, margin=None)
    assert out[0].negatives == out[1].negatives == expected(ranking(QUERY), (1, 6), {"d01", "d02"}, 3)
    assert stats == {"pairs": 2, "queries": 1, "with_full_negatives": 2, "with_fewer": 0,
                     "excluded_positives": 2, "dropped_by_margin": 0}


def test_passages_sharing_no_term_are_not_negatives(ranking):
    assert [d for d, _ in ranking("사기 피하는 법")] == ["d07"]  # BM25 returns matching passages only
    out, stats = mine([Pair("사기 피하는 법", CORPUS["d07"])], rank_range=(1, 14), negatives=3, margin=None)
    assert out[0].negatives == () and stats["with_fewer"] == 1 and stats["excluded_positives"] == 1


def test_margin_uses_the_score_of_a_positive_outside_the_corpus_and_the_hits(ranking):
    """d10 is left out of the corpus (so it gets a generated id) and ranks below the window (so its score
    is computed directly); a margin between the 3rd and 4th candidates' ratios keeps exactly the 4th."""
    hits = ranking(QUERY)
    scores = dict(hits)
    window = hits[:4]
    assert "d10" not in dict(window)
    positive = scores["d10"]
    margin = (window[2][1] + window[3][1]) / 2 / positive
    corpus = {d: t for d, t in CORPUS.items() if d != "d10"}
    out, stats = mine([Pair(QUERY, CORPUS["d10"])], corpus=corpus, rank_range=(1, 4), negatives=4, margin=margin)
    assert out[0].negatives == (CORPUS[window[3][0]],) == expected(hits, (1, 4), {"d10"}, 4, margin * positive)
    assert stats["dropped_by_margin"] == 3


def test_bad_arguments_are_refused_before_any_work():
    pair = [Pair(QUERY, CORPUS["d01"])]
    for kw in ({"rank_range": (0, 5)}, {"rank_range": (6, 5)}, {"negatives": 0}, {"margin": -0.5}):
        with pytest.raises(ValueError):
            mine(pair, **kw)
    from koembed.errors import SpecError

    with pytest.raises(SpecError, match="margin"):
        mine(pair, retriever_spec="hybrid:bm25+dense:minilm")


def _write_pairs(path: Path, pairs) -> Path:
    path.write_text("".join(json.dumps({"query": q, "positive": p}, ensure_ascii=False) + "\n" for q, p in pairs),
                    encoding="utf-8")
    return path


def test_cli_output_round_trips_as_a_training_source(tmp_path, sample):
    pairs = [(sample.queries[q], sample.corpus[d]) for q in sample.query_ids for d in sorted(sample.relevant_ids(q))]
    data = _write_pairs(tmp_path / "pairs.jsonl", pairs)
    out = tmp_path / "sub" / "mined.jsonl"
    result = CliRunner().invoke(app, ["mine", "--data", str(data), "--corpus", "sample", "--range", "3:30",
                                      "-n", "4", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    mined = read_pairs(out)
    assert [(p.query, p.positive) for p in mined] == pairs
    positives = {}
    for q, p in pairs:
        positives.setdefault(q, set()).add(p.strip())
    assert all(not positives[p.query] & {n.strip() for n in p.negatives} for p in mined)
    assert all(len(p.negatives) <= 4 for p in mined) and sum(len(p.negatives) == 4 for p in mined) > len(mined) // 2
    assert set(json.loads(result.output[: result.output.index("mined pairs:")])) >= {"pairs", "with_fewer"}
    # the same mining through the library, default margin
    direct, _ = mine_hard_negatives([Pair(q, p) for q, p in pairs], sample.corpus, rank_range=(3, 30),
                                    negatives=4, options=QUIET)
    assert mined == direct


@pytest.mark.parametrize("args", [["--range", "0:5"], ["--range", "9:3"], ["--range", "ten"],
                                  ["--margin", "-1"], ["-r", "hybrid:bm25+dense:minilm"], ["-r", "tfidf"]])
def test_cli_refuses_bad_options_and_writes_nothing(tmp_path, args):
    data = _write_pairs(tmp_path / "pairs.jsonl", [(QUERY, CORPUS["d01"])])
    out = tmp_path / "mined.jsonl"
    result = CliRunner().invoke(app, ["mine", "--data", str(data), "--out", str(out), "-q", *args])
    assert result.exit_code == 2, result.output
    assert not out.exists() and list(tmp_path.iterdir()) == [data]


def test_cli_missing_pairs_file_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "mined.jsonl"
    result = CliRunner().invoke(app, ["mine", "--data", str(tmp_path / "nope.jsonl"), "--out", str(out), "-q"])
    assert result.exit_code == 2 and "no such file" in result.output
    assert not out.exists()


def test_dense_margin_with_a_positive_inside_and_outside_the_window(monkeypatch):
    """Known cosines via a table model: the positive (0.85) ranks 4th, between 0.90 and 0.80."""
    import numpy as np

    cosines = {"n1": 0.99, "n2": 0.95, "n3": 0.90, "pos": 0.85, "n4": 0.80}
    table = {t: np.array([c, np.sqrt(1 - c * c)]) for t, c in cosines.items()} | {"q": np.array([1.0, 0.0])}
    monkeypatch.setattr("koembed.retrieval.factory.load_model", lambda spec: FixedModel(table))
    corpus = {t: t for t in cosines if t != "pos"}  # the positive is added, with a generated id
    pair = [Pair("q", "pos")]
    # window 1..5 holds the positive: threshold 0.95 * 0.85 = 0.8075 leaves n4 alone
    out, stats = mine(pair, corpus=corpus, retriever_spec="dense:table", rank_range=(1, 5), negatives=4, margin=0.95)
    assert out[0].negatives == ("n4",) and stats["excluded_positives"] == 1 and stats["dropped_by_margin"] == 3
    # window 1..3 misses it, so its score is computed: margin 1.1 puts the threshold at 0.935, between n2 and n3
    out, stats = mine(pair, corpus=corpus, retriever_spec="dense:table", rank_range=(1, 3), negatives=4, margin=1.1)
    assert out[0].negatives == ("n3",) and stats["dropped_by_margin"] == 2


def test_tiny_dense_model_mines_full_negatives_without_the_positive(tiny_model_dir, sample):
    pairs = [Pair(sample.queries[q], sample.corpus[sorted(sample.relevant_ids(q))[0]]) for q in sample.query_ids[:6]]
    out, stats = mine_hard_negatives(pairs, sample.corpus, f"dense:{tiny_model_dir}", negatives=3,
                                     rank_range=(1, len(sample.corpus)), margin=None, options=QUIET)
    assert [(p.query, p.positive) for p in out] == [(p.query, p.positive) for p in pairs]
    assert all(len(p.negatives) == 3 and p.positive not in p.negatives for p in out)
    assert stats["with_full_negatives"] == 6 and stats["excluded_positives"] == 6  # every positive was in the window
