"""Shared fixtures. ../shared/data is required in CI (CI=true) and skipped with a reason elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import KORQUAD, require_shared


@pytest.fixture(scope="session", autouse=True)
def _export_cache(tmp_path_factory):
    """Graph exports (``--backend onnx``/``openvino``, and ``auto`` where it picks one) go to a per-session folder,
    never to the user's ~/.cache/koembed."""
    import os

    from koembed.models.onnx import CACHE_ENV

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("koembed-cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


# What backend and precision ``auto`` pick depends on the CPU (koembed.models.precision.auto_setting): bf16 where it
# has AVX512-BF16 or AMX, whose embeddings vary with batch composition beyond the tolerances the tests compare at.
# The suite runs every process (CLI subprocesses too) as on an AVX2-only CPU, whichever machine CI draws; the
# decision for each CPU is tested on its own (test_openvino.py, test_encode.py), bf16 by asking for it.
PINNED_CPU_FLAGS = "fpu sse4_2 avx avx2 fma"


@pytest.fixture(scope="session", autouse=True)
def _pinned_cpu(tmp_path_factory):
    import os

    from koembed.models.precision import CPUINFO_ENV

    cpuinfo = tmp_path_factory.mktemp("cpu") / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {PINNED_CPU_FLAGS}\n", encoding="utf-8")
    previous = os.environ.get(CPUINFO_ENV)
    os.environ[CPUINFO_ENV] = str(cpuinfo)
    yield
    if previous is None:
        os.environ.pop(CPUINFO_ENV, None)
    else:
        os.environ[CPUINFO_ENV] = previous


@pytest.fixture(scope="session")
def korquad_path() -> Path:
    return require_shared(KORQUAD)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny XLM-RoBERTa + CLS pooling + Normalize model (the bge-m3 classes), saved once per session."""
    from koembed.models.testing import make_tiny_xlmr

    return make_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def sample():
    from koembed.data import load_retrieval_set

    return load_retrieval_set()


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """The tiny XLM-R loaded (fp32 torch, whatever ``auto`` picks on this CPU), once per test module: modules that
    change it do not leak into others."""
    from koembed.models import EXACT, ModelSpec, load_model

    return load_model(ModelSpec(str(tiny_model_dir), EXACT))


@pytest.fixture(scope="module")
def corpus(sample) -> tuple[list[str], list[str]]:
    """The bundled sample's (doc ids, passages)."""
    return list(sample.corpus), list(sample.corpus.values())


@pytest.fixture(scope="module")
def queries(sample) -> list[str]:
    return list(sample.queries.values())


@pytest.fixture(scope="module")
def exact(model, corpus):
    """Exact dense search of the sample with the tiny model: what an index's dense half must equal."""
    from koembed.retrieval.dense import DenseRetriever
    from tests.helpers import QUIET

    retriever = DenseRetriever(model, "dense", options=QUIET)
    retriever.fit(*corpus)
    return retriever


@pytest.fixture(scope="module")
def bm25(corpus):
    """koembed's in-memory BM25 with an index's default fields (bm25-phrase): what an index's bm25 half must equal."""
    from koembed.lexical import DEFAULT, BM25Retriever

    retriever = BM25Retriever(DEFAULT, show_progress=False)
    retriever.fit(*corpus)
    return retriever


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_model_dir, model, corpus):
    """A FAISS index (flat, bm25-phrase) of the bundled sample built with the tiny model, loaded."""
    from koembed.index import build_index, load_index
    from tests.helpers import QUIET

    out = tmp_path_factory.mktemp("sample-index") / "idx"
    build_index(str(tiny_model_dir), *corpus, out, options=QUIET, encoder=model)
    return load_index(out, encoder=model)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs) for the whole session, shut down at its end; yields its GCS address, where other
    processes (a koembed CLI run) join it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_static_dir(tmp_path_factory, sample) -> Path:
    """A tiny static model (WordPiece learned from the bundled sample, 32 dimensions) trained a few steps on the
    sample's query-passage pairs with koembed train: the static code path in seconds."""
    from tests.helpers import train_tiny_static

    return train_tiny_static(tmp_path_factory.mktemp("tiny-static"), sample)


@pytest.fixture(scope="session")
def tiny_m3_dir(tmp_path_factory) -> Path:
    """The tiny XLM-RoBERTa saved in bge-m3's layout (random sparse and ColBERT heads), once per session."""
    from koembed.models.testing import make_tiny_m3

    return make_tiny_m3(tmp_path_factory.mktemp("tiny-m3") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory) -> Path:
    """A tiny XLM-RoBERTa cross-encoder (one relevance score), saved once per session."""
    from koembed.models.testing import make_tiny_cross_encoder

    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce") / "model", seed=0)


@pytest.fixture(scope="module")
def base_index(tmp_path_factory, tiny_model_dir, model, corpus) -> Path:
    """The bundled sample indexed with the tiny model, once per module: what damage tests copy."""
    from koembed.index import build_index
    from tests.helpers import QUIET

    out = tmp_path_factory.mktemp("base") / "idx"
    build_index(str(tiny_model_dir), *corpus, out, options=QUIET, encoder=model)
    return out


@pytest.fixture
def index_dir(base_index, tmp_path) -> Path:
    """A fresh copy of the base index, to damage."""
    import shutil

    return Path(shutil.copytree(base_index, tmp_path / "idx"))
