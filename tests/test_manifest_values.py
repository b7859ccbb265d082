"""Round 3 of docs/RELIABILITY.md (issue 21), fault 21.7: numbers and keys that were accepted silently in a
FAISS index manifest, BM25's parameters and ``tune-fusion``'s options, and an output path no folder can be made
in. Each must be a clean error naming the file or option (exit 2), before any work.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from koembed.errors import IndexStoreError, SpecError
from koembed.index import add_documents, load_index
from koembed.lexical import LexicalConfig
from tests.helpers import NEW_DOCS, assert_clean_exit, cli, edit_manifest

MANIFEST_DAMAGE = {
    "counts.passages -5": (lambda m: m["counts"].update(passages=-5), "counts.passages"),
    "counts.deleted -1": (lambda m: m["counts"].update(deleted=-1), "counts.deleted"),
    "counts.extra": (lambda m: m["counts"].update(shards=2), "counts has unknown"),
    "next_id -1": (lambda m: m.update(next_id=-1), "next_id"),
    "dimension 0": (lambda m: m.update(dimension=0), "dimension"),
    "unknown field": (lambda m: m.update(shards=3), "'shards'"),
    "bm25 k1 -1": (lambda m: m["bm25"].update(k1=-1.0), "k1"),
    "bm25 b 2": (lambda m: m["bm25"].update(b=2.0), "b within"),
    "bm25 k1 text": (lambda m: m["bm25"].update(k1="1.2"), "bm25"),
    "bm25 unknown key": (lambda m: m["bm25"].update(k3=1), "bm25 has unknown"),
    "bm25 negative weight": (lambda m: m["bm25"]["weights"].update(unigram=-1), "bm25"),
    "fusion rrf_k 0": (lambda m: m["fusion"].update(rrf_k=0), "fusion"),
    "fusion unknown": (lambda m: m["fusion"].update(fusion="max"), "fusion"),
    "fusion 3 weights": (lambda m: m["fusion"].update(fusion="z", weights=[1, 1, 1]), "fusion"),
}


@pytest.mark.parametrize("case", MANIFEST_DAMAGE)
def test_impossible_manifest_numbers_and_unknown_keys_are_refused(index_dir, model, case):
    change, words = MANIFEST_DAMAGE[case]
    edit_manifest(index_dir, change)
    with pytest.raises(IndexStoreError, match="manifest.json"):
        load_index(index_dir, encoder=model)
    with pytest.raises(IndexStoreError):
        add_documents(index_dir, ["new-1"], [NEW_DOCS["new-1"]], encoder=model)
    assert_clean_exit(cli("index", "info", "--index", index_dir), "manifest.json", words)


def test_the_manifest_as_built_still_loads(index_dir, model):
    assert load_index(index_dir, encoder=model).search(["서울"], 3, mode="hybrid")[0]


@pytest.mark.parametrize("settings", [{"k1": -1.0}, {"k1": math.inf}, {"k1": math.nan}, {"b": -0.1},
                                      {"b": 1.5}, {"weights": {"unigram": math.inf}}])
def test_bm25_parameters_out_of_range_are_refused(settings):
    with pytest.raises(SpecError, match="k1|weights"):
        LexicalConfig(**settings)
    assert LexicalConfig(k1=0.0, b=0.0).k1 == 0.0  # binary term frequency, no length normalisation: valid


def test_tune_fusion_refuses_rrf_k_0_before_any_work(tmp_path):
    result = cli("tune-fusion", "--data", "sample", "-r", "bm25", "-r", "bm25-char", "--fusion", "rrf",
                 "--rrf-k", "0", "--out", tmp_path / "fit.json")
    assert result.exit_code == 2 and "--rrf-k" in result.output, result.output
    assert not (tmp_path / "fit.json").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("command", [["distill", "--teacher", "minilm", "--out", "/proc/koembed-d"],
                                     ["bench", "--data", "sample", "-r", "bm25", "--out", "/proc/koembed.json"]])
def test_an_output_no_folder_can_be_made_in_is_refused_before_work(command):
    """/proc passes os.access for root, yet nothing can be created there: the check now makes (and removes) a
    folder beside the output, so the run stops before any work instead of with a traceback at the end."""
    assert_clean_exit(cli(*command), "--out", "/proc")
