"""The search playground (``GET /``): its files, its highlight spans, and the page itself in a real browser.

The spans ``/search`` returns with ``"highlight": true`` must be exactly where Kiwi (run directly here, with the
morpheme classes of koembed.lexical.kiwi's docstring written out again) finds the query's content morphemes in
each passage. The browser test starts a real ``koembed serve`` (with an API key, typed into the page) and headless
Debian chromium, and checks that each column lists exactly ``/search``'s doc ids, that passage text is shown as
text (an ``<img onerror>`` passage runs nothing), and that the Bench tab shows a real ``koembed bench``
results.json's numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from koembed.lexical import KiwiTokenizer
from koembed.models import load_model
from koembed.server import create_app
from koembed.server.config import PLAYGROUND_FILES
from tests.helpers import QUIET, ROOT, chromium, kiwi_object, kiwi_token, running

KEY = "playground-key-7c1e"
XSS_ID = "zz-xss"
XSS_TEXT = "😀 전세 보증금 반환 <img src=x onerror=\"document.title='pwned'\"> 소송 절차 <b>굵게</b>"
# A right-to-left override (U+202E) left open: without bidi isolation it reverses every following character of the
# paragraph on screen, highlighted morphemes included.
RTL_ID = "zz-rtl"
RTL_TEXT = "주의 사항: \u202e역방향 표시 시험 문장입니다"
SNIPPET, CONTEXT = 180, 50  # playground.js: code points shown in a snippet, of which before the first match
QUERIES = ["전세 보증금을 돌려받으려면 어떻게 해야 하나요?", "회사에서 연차 휴가는 며칠인가요?"]
def _expected_spans(query: str, text: str) -> list[list[int]]:
    """Kiwi directly: the spans of the passage's morphemes that are among the query's, overlaps merged."""
    kiwi = kiwi_object()
    wanted = {t for t in map(kiwi_token, kiwi.tokenize(query)) if t}
    spans = sorted((m.start, m.start + m.len) for m in kiwi.tokenize(text) if kiwi_token(m) in wanted)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


@pytest.fixture(scope="module")
def corpus(sample) -> dict[str, str]:
    return {**sample.corpus, XSS_ID: XSS_TEXT, RTL_ID: RTL_TEXT}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, corpus) -> Path:
    from koembed.index import IndexParams, build_index
    from koembed.lexical import PRESETS

    out = tmp_path_factory.mktemp("playground-index") / "idx"
    # Kiwi, not the default MeCab-ko: highlighting must follow the index's analyzer, checked against Kiwi itself
    params = IndexParams(lexical=PRESETS["bm25-phrase"].with_analyzer("kiwi"))
    build_index("static-ko", list(corpus), list(corpus.values()), out, options=QUIET, params=params)
    return out


@pytest.fixture(scope="module")
def app_url(index_dir):
    from koembed.index import load_index

    model = load_model("static-ko")
    app = create_app(model, "static-ko", index=load_index(index_dir, encoder=model), api_key=KEY)
    with running(app) as base:
        yield base


# --------------------------------------------------------------------------- without a browser


def test_positioned_tokens_are_the_bm25_tokens_at_kiwis_offsets(sample):
    texts = [*list(sample.corpus.values())[:10], XSS_TEXT, "돌려받아야 해요. iPhone은 2024년에 나왔다 🙂"]
    tokenizer, kiwi = KiwiTokenizer(), kiwi_object()
    positioned = tokenizer.positioned(texts)
    assert [[t for t, _, _ in row] for row in positioned] == tokenizer(texts)
    for text, row in zip(texts, positioned):
        expected = [(t, m.start, m.start + m.len) for m in kiwi.tokenize(text) if (t := kiwi_token(m))]
        assert row == expected
        assert all(0 <= s < e <= len(text) for _, s, e in row)


def test_search_highlight_spans_equal_kiwis_and_keep_the_ranking(app_url, corpus):
    auth = {"Authorization": f"Bearer {KEY}"}
    checked = 0
    for query in [*QUERIES, "보증금 onerror 소송"]:
        for mode in ("bm25", "dense", "hybrid"):
            plain = httpx.post(f"{app_url}/search", json={"query": query, "k": 8, "mode": mode}, headers=auth)
            lit = httpx.post(f"{app_url}/search", json={"query": query, "k": 8, "mode": mode, "highlight": True},
                             headers=auth)
            assert plain.status_code == lit.status_code == 200, lit.text
            hits = lit.json()["hits"]
            assert [{k: v for k, v in h.items() if k != "matches"} for h in hits] == plain.json()["hits"]
            assert "matches" not in plain.json()["hits"][0] and "morphemes" not in plain.json()
            assert lit.json()["morphemes"] == KiwiTokenizer()([query])[0]
            for hit in hits:
                assert hit["text"] == corpus[hit["docid"]]
                assert hit["matches"] == _expected_spans(query, hit["text"]), (query, hit["docid"])
                checked += bool(hit["matches"])
    assert checked > 10  # most hits share a morpheme with the query: the spans were really compared
    xss = httpx.post(f"{app_url}/search", json={"query": "보증금 onerror 소송", "k": 1, "mode": "bm25",
                                                "highlight": True}, headers=auth).json()["hits"][0]
    assert xss["docid"] == XSS_ID
    assert [xss["text"][s:e] for s, e in xss["matches"]] == ["보증금", "onerror", "소송"]  # after an emoji: code points


def test_health_names_the_index_lexical_retriever_and_fusion(app_url):
    from koembed.lexical import PRESETS, LexicalConfig, lexical_config, lexical_spec

    health = httpx.get(f"{app_url}/health").json()
    assert health["lexical"] == "bm25-phrase"  # an index's default lexical fields (docs/cli.md), not "Kiwi morphemes"
    assert health["analyzer"] == "kiwi"  # the index's analyzer (this one is built with Kiwi)
    assert health["fusion"] == {"fusion": "rrf", "weights": None, "rrf_k": 60}
    assert [lexical_spec(config) for config in PRESETS.values()] == list(PRESETS)
    custom = LexicalConfig({"unigram": 1.0, "char": 0.5}, "z")
    assert lexical_spec(custom) == "bm25-fields:unigram=1,char=0.5@z"
    assert lexical_config(lexical_spec(custom)) == custom  # a spec that reads back as the same retriever


def test_page_files_are_open_local_and_guarded_like_the_rest(app_url, index_dir):
    for route, name in PLAYGROUND_FILES.items():
        response = httpx.get(f"{app_url}{route}")  # no key: the files hold no data
        assert response.status_code == 200
        assert response.content == (ROOT / "src/koembed/server/static" / name).read_bytes()
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        # Nothing from another origin (no CDN): the only absolute URL is the SVG namespace name.
        assert re.findall(r"https?://[^\s\"'`]+", response.text) in ([], ["http://www.w3.org/2000/svg"])
    assert httpx.post(f"{app_url}/search", json={"query": "보증금"}).status_code == 401
    # A keyless server answers the page only under a loopback Host name (no DNS rebinding), like every route.
    model = load_model("static-ko")
    with running(create_app(model, "static-ko")) as keyless:
        assert httpx.get(f"{keyless}/").status_code == 200
        refused = httpx.get(f"{keyless}/", headers={"Host": "evil.example:80"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "host_not_allowed"


def test_every_page_file_is_package_data():
    """pyproject's package-data globs ship every file of server/static (an editable install would hide a miss)."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = ROOT / "src/koembed/server/static"
    files = sorted(p.relative_to(static.parent).as_posix() for p in static.iterdir())
    assert sorted(PLAYGROUND_FILES.values()) == sorted(Path(f).name for f in files)
    assert all(any(fnmatch.fnmatch(f, g) for g in globs["koembed.server"]) for f in files), files


# --------------------------------------------------------------------------- in a real browser


def _serve(index_dir: Path, reranker: Path) -> tuple[subprocess.Popen, str]:
    """``koembed serve`` with a key and a reranker on 127.0.0.1 and a port the OS picks (read from uvicorn's log)."""
    env = {**os.environ, "KOEMBED_API_KEY": KEY}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "koembed"), "serve", "--model", "static-ko",
                             "--index", str(index_dir), "--reranker", str(reranker), "--rerank-depth", "10",
                             "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, log = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        log.append(line)
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    proc.wait()
    raise RuntimeError("koembed serve did not start:\n" + "".join(log))


@pytest.mark.slow
def test_playground_in_headless_chromium(tmp_path, index_dir, tiny_cross_encoder_dir):
    import json

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, chromedriver = chromium()
    results_path = tmp_path / "results.json"
    bench = subprocess.Popen([str(Path(sys.executable).parent / "koembed"), "bench", "-r", "bm25-char", "-r",
                              "dense:static-ko", "--top-k", "1,3,10", "--out", str(results_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server, url = _serve(index_dir, tiny_cross_encoder_dir)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1500,1100", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        wait = WebDriverWait(driver, 90)  # a shared, loaded CI machine: the first search builds BM25 and Kiwi
        driver.get(url + "/")
        wait.until(lambda d: "passages" in d.find_element(By.ID, "server-info").text)
        driver.find_element(By.ID, "api-key").send_keys(KEY)
        auth = {"Authorization": f"Bearer {KEY}"}

        def search(query: str, k: int) -> dict[str, list]:
            box = driver.find_element(By.ID, "query")
            box.clear()
            box.send_keys(query)
            k_box = driver.find_element(By.ID, "k")
            k_box.clear()
            k_box.send_keys(str(k))
            driver.find_element(By.ID, "search-button").click()
            wait.until(lambda d: all(c.get_attribute("data-state") in ("done", "error")
                                     for c in d.find_elements(By.CSS_SELECTOR, "#columns .column")))
            shown = {}
            for column in driver.find_elements(By.CSS_SELECTOR, "#columns .column"):
                assert column.get_attribute("data-state") == "done", column.text
                shown[column.get_attribute("data-mode")] = column.find_elements(By.CSS_SELECTOR, "li.hit")
            return shown

        headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#columns .column h2")]
        # the index was built without --fusion: it records bm25 as its default search, shown first and marked
        assert headers == ["Lexical: bm25-phrase (Kiwi) (index default)", "Dense", "Hybrid: RRF (k=60)",
                           "Hybrid + rerank"]
        query = QUERIES[0]
        shown = search(query, 5)
        assert list(shown) == ["bm25", "dense", "hybrid", "rerank"]  # the server has a reranker
        part_rank = {mode: {h["docid"]: h["rank"] for h in httpx.post(f"{url}/search", headers=auth, json={
            "query": query, "k": 100, "mode": mode}).json()["hits"]} for mode in ("bm25", "dense")}
        snippets = 0
        for mode, items in shown.items():
            body = {"query": query, "k": 5, "highlight": True}
            body.update({"mode": "hybrid", "rerank": True} if mode == "rerank" else {"mode": mode})
            expected = httpx.post(f"{url}/search", json=body, headers=auth).json()["hits"]
            assert [li.get_attribute("data-docid") for li in items] == [h["docid"] for h in expected], mode
            for li, hit in zip(items, expected):
                text, matches = hit["text"], hit["matches"]
                passage = li.find_element(By.CSS_SELECTOR, ".passage")
                marks = lambda: [m.text for m in li.find_elements(By.TAG_NAME, "mark")]  # noqa: B023 - called in this iteration
                expand = li.find_elements(By.CSS_SELECTOR, "button.expand")
                if len(text) > SNIPPET + CONTEXT:  # a snippet around the first match, then the whole passage
                    snippets += 1
                    start = max(0, min((matches[0][0] if matches else 0) - CONTEXT, len(text) - SNIPPET))
                    stop = start + SNIPPET
                    shown_text = passage.text.removeprefix("…").removesuffix("…").strip()
                    assert shown_text == text[start:stop].strip()
                    assert passage.text.startswith("…") == (start > 0)
                    assert passage.text.endswith("…") == (stop < len(text))
                    assert marks() == [text[max(s, start):min(e, stop)] for s, e in matches if s < stop and e > start]
                    assert expand[0].get_attribute("aria-expanded") == "false"
                    expand[0].click()
                    assert expand[0].get_attribute("aria-expanded") == "true"
                else:
                    assert expand == []
                assert passage.text == text
                assert marks() == [text[s:e] for s, e in matches]
                assert li.find_element(By.CSS_SELECTOR, ".rank").text == f"#{hit['rank']}"
                score = li.find_element(By.CSS_SELECTOR, ".score")
                assert float(score.get_attribute("data-score")) == hit["score"]
                readable = {"bm25": f"BM25 {hit['score']:.2f}", "dense": f"cosine {hit['score']:.3f}",
                            "rerank": f"reranker {hit['score']:.3f}"}
                if mode == "hybrid":  # the parts' ranks, not the fused 1/(60 + rank) sums
                    readable["hybrid"] = " · ".join(
                        f"{name} #{part_rank[part][hit['docid']]}" if hit["docid"] in part_rank[part]
                        else f"{name} not in top 100" for name, part in (("lexical", "bm25"), ("dense", "dense")))
                assert score.text == readable[mode]
        assert snippets > 5  # most sample passages are longer than a snippet: the snippets were really checked
        assert any(li.find_elements(By.TAG_NAME, "mark") for li in shown["bm25"])
        driver.save_screenshot(str(tmp_path / "search.png"))

        # A right-to-left override in a passage reorders only its own piece of text: every highlighted morpheme
        # is still drawn left to right (its first character left of its last), as in any other passage.
        rtl = search("역방향 표시 시험", 3)["bm25"][0]
        assert rtl.get_attribute("data-docid") == RTL_ID
        rtl_marks = rtl.find_elements(By.TAG_NAME, "mark")
        assert [m.text for m in rtl_marks] == ["역방향", "표시", "시험"]
        left_to_right = """
            const text = arguments[0].firstChild, range = document.createRange();
            const left = (i) => { range.setStart(text, i); range.setEnd(text, i + 1);
                                  return range.getBoundingClientRect().left; };
            return left(0) < left(text.length - 1);"""
        assert [driver.execute_script(left_to_right, m) for m in rtl_marks] == [True, True, True]
        driver.save_screenshot(str(tmp_path / "search-rtl-passage.png"))

        # A passage holding HTML is shown as text: no element made from it, its onerror never ran.
        shown = search("보증금 onerror 소송", 3)
        xss = shown["bm25"][0]
        assert xss.get_attribute("data-docid") == XSS_ID
        assert xss.find_element(By.CSS_SELECTOR, ".passage").text == XSS_TEXT
        assert driver.find_elements(By.CSS_SELECTOR, "#columns img, #columns b") == []
        assert driver.title == "koembed playground"
        driver.save_screenshot(str(tmp_path / "search-html-passage.png"))

        # Bench tab: a real koembed bench results.json, its numbers in the tables and the plots.
        assert bench.wait(timeout=120) == 0, bench.stderr.read()
        results = json.loads(results_path.read_text(encoding="utf-8"))
        driver.find_element(By.ID, "tab-bench").click()
        not_results = tmp_path / "not-results.json"
        not_results.write_text('{"results": "<img src=x onerror=alert(1)>"}', encoding="utf-8")
        driver.find_element(By.ID, "results-file").send_keys(str(not_results))
        wait.until(lambda d: d.find_element(By.ID, "bench").get_attribute("data-state") == "error")
        assert "not-results.json: not a koembed bench results.json" in driver.find_element(By.ID, "bench-error").text
        driver.find_element(By.ID, "results-file").send_keys(str(results_path))
        wait.until(lambda d: d.find_element(By.ID, "bench").get_attribute("data-state") == "done")
        assert driver.find_element(By.ID, "panel-search").is_displayed() is False
        for k in ("1", "3", "10"):
            table = driver.find_element(By.ID, f"autorag-{k}")
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            assert [r.get_attribute("data-retriever") for r in rows] == [r["retriever"] for r in results["results"]]
            for row, result in zip(rows, results["results"]):
                cells = row.find_elements(By.TAG_NAME, "td")
                assert [c.get_attribute("data-metric") for c in cells] == ["f1", "recall", "precision", "map", "mrr",
                                                                          "ndcg"]
                for cell in cells:
                    value = result["autorag"][k][cell.get_attribute("data-metric")]
                    assert float(cell.get_attribute("data-value")) == value
                    assert abs(float(cell.text) - value) <= 5e-5 + 1e-12
        for result in results["results"]:
            for metric in ("recall", "ndcg"):
                dots = driver.find_elements(By.CSS_SELECTOR, f"#plot-{metric} g.series[data-retriever="
                                                             f"'{result['retriever']}'] circle")
                assert [(d.get_attribute("data-k"), float(d.get_attribute("data-value"))) for d in dots] == \
                       [(k, result["autorag"][k][metric]) for k in ("1", "3", "10")]
            ir_cells = driver.find_elements(By.CSS_SELECTOR, f"#ir td[data-retriever='{result['retriever']}']")
            assert {c.find_element(By.XPATH, "..").get_attribute("data-metric"): float(c.get_attribute("data-value"))
                    for c in ir_cells} == result["ir"]
        driver.save_screenshot(str(tmp_path / "bench.png"))
        if os.environ.get("KOEMBED_SCREENSHOTS"):  # a folder to keep the screenshots in, for a human to look at
            for shot in ("search.png", "search-html-passage.png", "search-rtl-passage.png", "bench.png"):
                shutil.copy(tmp_path / shot, Path(os.environ["KOEMBED_SCREENSHOTS"]) / shot)
        assert (tmp_path / "search.png").stat().st_size > 10_000 and (tmp_path / "bench.png").stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        if bench.poll() is None:
            bench.kill()
        bench.wait()
