"""``koembed bench --report``: the failure analysis in results.json equals what the run files and Kiwi (run directly)
say, and the self-contained page shows exactly those numbers in headless chromium (the playground's browser)."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from tests.helpers import chromium, kiwi_object, kiwi_token, read_run

RETRIEVERS = ["bm25-phrase", "dense:static-ko"]


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    out, runs, report = folder / "results.json", folder / "runs", folder / "report.html"
    args = ["bench", *[a for r in RETRIEVERS for a in ("-r", r)], "--top-k", "1,3", "--out", str(out),
            "--run-out", str(runs), "--report", str(report), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8")), report, folder


def _expected(doc, sample):
    """Gold ranks, kinds and winners recomputed from the run files and Kiwi itself."""
    runs = {e["retriever"]: read_run(e["run"])[0] for e in doc["results"]}
    kiwi = kiwi_object()
    tokens = lambda text: {t for t in map(kiwi_token, kiwi.tokenize(text)) if t}
    long_chars = 2 * statistics.median(len(q) for q in sample.queries.values())
    expected = {}
    for qid, query in sample.queries.items():
        gold = sample.relevant_ids(qid)
        ranks = {}
        for name, rankings in runs.items():
            ranking = rankings.get(qid, [])
            ranks[name] = next((i + 1 for i, d in enumerate(ranking) if d in gold), None)
        best = min((r for r in ranks.values() if r is not None), default=None)
        kinds = [k for k, yes in (("no_shared_morpheme", not any(tokens(query) & tokens(sample.corpus[d]) for d in gold)),
                                  ("long_query", len(query) > long_chars)) if yes]
        expected[qid] = {"ranks": ranks, "winners": [n for n, r in ranks.items() if r is not None and r == best],
                         "kinds": kinds}
    return expected


def test_analysis_in_results_json_equals_the_runs_and_kiwi(bench_report, sample):
    doc, _, _ = bench_report
    analysis = doc["analysis"]
    expected = _expected(doc, sample)
    assert [q["qid"] for q in analysis["queries"]] == list(sample.queries)
    for q in analysis["queries"]:
        want = expected[q["qid"]]
        assert {n: run["gold_rank"] for n, run in q["runs"].items()} == want["ranks"], q["qid"]
        assert q["winners"] == want["winners"] and q["kinds"] == want["kinds"], q["qid"]
        for name, run in q["runs"].items():
            rank = want["ranks"][name]
            assert ("gold_rank_2_5" in run["kinds"]) == (rank is not None and 2 <= rank <= 5)
            assert ("missed" in run["kinds"]) == (rank is None)
            assert [h["gold"] for h in run["top"]] == [h["docid"] in sample.relevant_ids(q["qid"]) for h in run["top"]]
    for name in RETRIEVERS:
        counts = analysis["summary"][name]
        assert counts["gold_at_1"] == sum(e["ranks"][name] == 1 for e in expected.values())
        assert counts["won"] == sum(name in e["winners"] for e in expected.values())
        assert counts["gold_rank_2_5"] == sum(2 <= (e["ranks"][name] or 0) <= 5 for e in expected.values())
    # The sample's passages all have their own title: no top hit comes from a gold passage's document.
    assert analysis["summary"]["bm25-phrase"]["top1_same_document"] == 0
    assert sum(analysis["summary"][n]["gold_rank_2_5"] for n in RETRIEVERS) > 0  # the kinds were really exercised
    assert sum(bool(e["kinds"]) for e in expected.values()) > 0


@pytest.mark.slow
def test_report_page_shows_exactly_results_json_in_headless_chromium(bench_report, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    doc, report, _ = bench_report
    analysis = doc["analysis"]
    html = report.read_text(encoding="utf-8")
    assert re.findall(r"https?://", html) == []  # self-contained: nothing from another origin
    browser, chromedriver = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1500,1100", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        first = analysis["queries"][5]["qid"]
        driver.get(report.as_uri() + f"#q-{first}")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        assert driver.get_log("browser") == []  # the CSP let the one script run, and it raised nothing
        for cell in driver.find_elements(By.CSS_SELECTOR, "#summary td"):
            value = analysis["summary"][cell.get_attribute("data-retriever")][cell.get_attribute("data-count")]
            assert int(cell.get_attribute("data-value")) == value and cell.text == str(value)
        rows = driver.find_elements(By.CSS_SELECTOR, "#queries tbody tr")
        assert [r.get_attribute("data-qid") for r in rows] == [q["qid"] for q in analysis["queries"]]
        checked = 0
        for row, q in zip(rows, analysis["queries"]):
            for cell in row.find_elements(By.CSS_SELECTOR, "td[data-retriever]"):
                rank = q["runs"][cell.get_attribute("data-retriever")]["gold_rank"]
                assert cell.get_attribute("data-value") == ("" if rank is None else str(rank))
                assert cell.text.split()[0] == ("–" if rank is None else str(rank))
                hits = q["runs"][cell.get_attribute("data-retriever")]["top"]
                shown = [p.get_attribute("textContent") for p in cell.find_elements(By.CSS_SELECTOR, "details p")]
                heads = [f"{h['docid']}{' (gold)' if h['gold'] else ''} {h['score']:.4f} " for h in hits]
                assert len(shown) == len(hits) and all(t.startswith(head) for t, head in zip(shown, heads)), shown
                checked += 1
            assert row.find_elements(By.CSS_SELECTOR, "td.num")[0].text == str(q["chars"])
            assert row.find_element(By.CSS_SELECTOR, "a").get_attribute("href").endswith(f"#q-{q['qid']}")
        assert checked == len(RETRIEVERS) * len(analysis["queries"])
        assert driver.execute_script("return document.querySelector(':target').id") == f"q-{first}"  # linkable
        # Filter: dense's near misses; the count shown is the summary's.
        Select(driver.find_element(By.ID, "kind")).select_by_value("gold_rank_2_5")
        Select(driver.find_element(By.ID, "retriever")).select_by_value("dense:static-ko")
        visible = [r for r in driver.find_elements(By.CSS_SELECTOR, "#queries tbody tr") if r.is_displayed()]
        assert len(visible) == analysis["summary"]["dense:static-ko"]["gold_rank_2_5"] > 0
        assert all("gold_rank_2_5" in q["runs"]["dense:static-ko"]["kinds"] for q in analysis["queries"]
                   if q["qid"] in {r.get_attribute("data-qid") for r in visible})
        Select(driver.find_element(By.ID, "kind")).select_by_value("")
        Select(driver.find_element(By.ID, "retriever")).select_by_value("")
        assert driver.find_element(By.ID, "shown").text == f"{len(rows)} of {len(rows)} queries"
        # Sort by query length: ascending, then descending.
        header = driver.find_element(By.XPATH, "//table[@id='queries']//th[text()='chars']")
        for reverse in (False, True):
            header.click()
            shown = [int(r.find_elements(By.CSS_SELECTOR, "td.num")[0].text)
                     for r in driver.find_elements(By.CSS_SELECTOR, "#queries tbody tr")]
            assert shown == sorted((q["chars"] for q in analysis["queries"]), reverse=reverse)
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
