"""Progress bars off a terminal (piped to a file or a CI log): one plain line per bar, no carriage returns."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from koembed.progress import progress


def test_bench_piped_to_a_file_prints_each_bar_once_as_one_line(tmp_path):
    """The real CLI with stderr going to a file: MeCab-ko (the default analyzer) runs on the corpus and the queries,
    BM25 once."""
    log = tmp_path / "stderr.txt"
    with open(log, "w", encoding="utf-8") as err:
        done = subprocess.run([str(Path(sys.executable).parent / "koembed"), "bench", "-r", "bm25", "--top-k", "1"],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=300)
    assert done.returncode == 0, log.read_text(encoding="utf-8")
    text = log.read_text(encoding="utf-8")
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith(("MeCab-ko:", "BM25:"))]
    assert [line.split(":")[0] for line in lines] == ["MeCab-ko", "MeCab-ko", "BM25"], text
    assert lines[0].startswith("MeCab-ko: 48/48 text [") and lines[1].startswith("MeCab-ko: 96/96 text [")
    assert lines[2].startswith("BM25: 96/96 query [")


def test_a_long_job_off_a_terminal_prints_a_line_every_period(monkeypatch):
    monkeypatch.setenv("KOEMBED_PROGRESS_PERIOD", "0.2")
    out = io.StringIO()
    with progress(total=4, desc="Encoding", unit="text", file=out) as bar:
        for _ in range(4):
            time.sleep(0.25)
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and lines[-1].startswith("Encoding: 4/4 text [")
    assert 3 <= len(lines) <= 5  # one per period, and the last at the end; none at 0/4
    assert all(not line.startswith("Encoding: 0/4") for line in lines)
    assert [int(line.split(": ")[1].split("/")[0]) for line in lines] == sorted(
        int(line.split(": ")[1].split("/")[0]) for line in lines)


def test_a_disabled_bar_prints_nothing_and_a_terminal_gets_tqdm():
    from tqdm.auto import tqdm

    out = io.StringIO()
    assert list(progress(range(3), desc="Kiwi", disable=True, file=out)) == [0, 1, 2]
    assert out.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress(range(3), desc="Kiwi", file=Terminal())
    assert type(bar) is tqdm
    bar.close()


def test_bars_off_a_terminal_start_no_thread_each():
    """One bar per query (a search worker's BM25 over Kiwi) must not leave a tqdm monitor thread per bar."""
    import threading

    for _ in range(3):  # the first bar may start tqdm's one monitor
        list(progress(iter([1]), desc="x", total=1, disable=True, file=io.StringIO()))
    before = threading.active_count()
    for _ in range(50):
        list(progress(iter([1, 2]), desc="x", total=2, file=io.StringIO()))
        list(progress(iter([1]), desc="x", total=1, disable=True, file=io.StringIO()))
    assert threading.active_count() <= before
