"""ONNX backends: export a sentence-transformers model to ONNX (optionally int8) and encode with onnxruntime.

Built on the real tools, no graph code of our own: ``torch.onnx.export`` (TorchScript exporter) traces the
*whole* sentence-transformers pipeline (encoder + pooling + normalisation, whatever modules the model has)
into one graph from token ids to sentence embeddings, and ``onnxruntime.quantization.quantize_dynamic``
turns its MatMul weights into int8. sentence-transformers' own ONNX backend needs optimum-onnx, which pins
an older transformers/sentence-transformers stack (docs/STACK.md), hence this small exporter.

An export folder (``koembed export --backend onnx-int8 --out DIR``) holds ``model.onnx``, the tokenizer files
and ``koembed_onnx.json`` (backend, dimension, max length, inputs, sha256 of the graph files, source model,
versions); :func:`koembed.models.load_model` opens it like any model folder (:mod:`koembed.models.export` writes
one from a model name and checks it). ``--backend onnx|onnx-int8`` on
a torch model exports it once into the koembed cache (keyed by a hash of its weights) and reuses that.
ONNX backends run on the CPU (the onnxruntime CPU build); use the torch backend on a GPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.files import checksums, inside, read_manifest, require_empty_folder, staged_folder, verify_files
from koembed.models.spec import ONNX_BACKENDS
from koembed.progress import progress

if TYPE_CHECKING:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

META_FILE = "koembed_onnx.json"
GRAPH_FILE = "model.onnx"
WEIGHTS_FILE = "model.onnx.data"  # weights of graphs over protobuf's 2 GB limit (bge-m3 in fp32)
FORMAT, FORMAT_VERSION = "koembed-onnx", 1
OPSET = 17
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CACHE_ENV = "KOEMBED_CACHE_DIR"
# Per-channel int8 weights: per-tensor scales cost all-MiniLM-L6-v2 most of its quality (mean cosine to fp32
# 0.67 on Korean passages, measured) while per-channel keeps 0.98 at the same speed.
QUANTIZATION = {"weight_type": "int8", "per_channel": True, "op_types": ["MatMul"]}


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`export_onnx`."""
    return (Path(path).expanduser() / META_FILE).is_file()


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The ``koembed_onnx.json`` of an export folder, checked to be a format this version reads."""
    meta_path = Path(folder).expanduser() / META_FILE
    meta = read_manifest(meta_path, ModelLoadError, format=FORMAT, version=FORMAT_VERSION,
                         remedy="export the model again")
    if meta.get("backend") not in ONNX_BACKENDS:
        raise ModelLoadError(f"{meta_path}: field 'backend' is {meta.get('backend')!r}, not one of "
                             f"{', '.join(ONNX_BACKENDS)}")
    return meta


def export_backend(folder: str | Path) -> str:
    """``onnx`` or ``onnx-int8``: the backend an export folder was written for."""
    return str(read_meta(folder)["backend"])


def _pipeline(model: SentenceTransformer, names: Sequence[str]) -> torch.nn.Module:
    """The sentence-transformers model as a module of positional tensors, which is what the tracer takes."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(dict(zip(names, tensors)))["sentence_embedding"]

    return Pipeline().eval()


@contextlib.contextmanager
def _eager_attention(model: SentenceTransformer) -> Iterator[None]:
    """Trace with eager attention: SDPA traces into mask logic that onnxruntime ran at 0.70x the speed of the
    eager graph's plain MatMul/Softmax (all-MiniLM-L6-v2, 256 tokens, measured); results are the same."""
    from transformers import PreTrainedModel

    changed = [(m, m.config._attn_implementation) for m in model.modules()
               if isinstance(m, PreTrainedModel) and m.config._attn_implementation != "eager"]
    for module, _ in changed:
        module.set_attn_implementation("eager")
    try:
        yield
    finally:
        for module, previous in changed:
            module.set_attn_implementation(previous)


def export_onnx(model: SentenceTransformer, out_dir: str | Path, backend: str = "onnx",
                source: dict[str, str] | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` (a loaded fp32 sentence-transformers model) as an ONNX export folder at ``out_dir``.

    ``backend`` ``onnx`` keeps fp32 weights; ``onnx-int8`` quantises the MatMul weights to int8 per channel
    (activations are quantised at run time: dynamic quantisation, no calibration data). ``source`` (the
    model's name and resolved path) is recorded. The folder is staged next to ``out_dir`` and renamed into
    place, so a failed export leaves nothing; an existing non-empty ``out_dir`` is refused unless
    ``overwrite``. Graphs over 2 GB (bge-m3 in fp32) are stored with external weight files.
    """
    import torch

    if backend not in ONNX_BACKENDS:
        raise ModelLoadError(f"export writes an ONNX backend ({', '.join(ONNX_BACKENDS)}), not {backend!r}")
    out_dir = require_empty_folder(out_dir, ModelLoadError, overwrite)
    if next(model.parameters()).dtype != torch.float32:
        raise ModelLoadError("export needs the fp32 model: load it with --precision fp32")
    tokenizer = model.tokenizer
    sample = tokenizer(["한국어 문장 임베딩을 내보냅니다.", "짧은 글"], padding=True, return_tensors="pt")
    names = [name for name in MODEL_INPUTS if name in sample]
    with staged_folder(out_dir, replace=True) as stage:
        fp32_dir = stage / "fp32" if backend == "onnx-int8" else stage
        fp32_dir.mkdir(exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad(), _eager_attention(model):
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
            torch.onnx.export(_pipeline(model.cpu(), names), tuple(sample[n] for n in names),
                              str(fp32_dir / GRAPH_FILE), dynamo=False, opset_version=OPSET, input_names=names,
                              output_names=["sentence_embedding"],
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            "sentence_embedding": {0: "batch"}})
        if len(list(fp32_dir.iterdir())) > 1:  # over 2 GB: the exporter wrote one file per weight tensor
            _gather_weights(fp32_dir)
        if backend == "onnx-int8":
            _quantize(fp32_dir, stage)
        graph_files = sorted(p.name for p in stage.iterdir())
        tokenizer.save_pretrained(str(stage))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "backend": backend, "file": GRAPH_FILE,
                "files": checksums(stage, graph_files), "inputs": names, "output": "sentence_embedding",
                "dimension": int(model.get_embedding_dimension()), "max_seq_length": model.max_seq_length,
                "similarity_fn_name": getattr(model, "similarity_fn_name", None) or "cosine",
                "normalized": any(type(m).__name__ == "Normalize" for m in model.modules()),
                "quantization": QUANTIZATION if backend == "onnx-int8" else None, "opset": OPSET,
                "prompts": dict(getattr(model, "prompts", None) or {}),
                "source": source or {}, "versions": _versions()}
        (stage / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _quantize(fp32_dir: Path, out_dir: Path) -> None:
    """Write the int8 copy of ``fp32_dir``'s graph into ``out_dir`` and remove ``fp32_dir``."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    external = (fp32_dir / WEIGHTS_FILE).exists()
    logging.disable(logging.WARNING)  # the quantiser's root-logger advice on static pre-processing
    try:
        quantize_dynamic(str(fp32_dir / GRAPH_FILE), str(out_dir / GRAPH_FILE), weight_type=QuantType.QInt8,
                         per_channel=QUANTIZATION["per_channel"], op_types_to_quantize=QUANTIZATION["op_types"],
                         use_external_data_format=external)
    finally:
        logging.disable(logging.NOTSET)
    shutil.rmtree(fp32_dir)


def _gather_weights(folder: Path) -> None:
    """Rewrite an exported graph's many external weight files as one ``model.onnx.data`` beside it."""
    import onnx

    graph = onnx.load(str(folder / GRAPH_FILE))  # reads the external tensors into memory
    for path in folder.iterdir():
        path.unlink()
    onnx.save_model(graph, str(folder / GRAPH_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=WEIGHTS_FILE, size_threshold=1024)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("koembed", "torch", "onnx", "onnxruntime", "sentence-transformers")}


def weights_key(model: SentenceTransformer, backend: str) -> str:
    """A hash of the model's weights, tokenizer vocabulary and max length: the cache key of its export."""
    digest = hashlib.sha256(f"{FORMAT}-{FORMAT_VERSION}-{backend}-{model.max_seq_length}".encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(sorted(model.tokenizer.get_vocab().items())).encode())
    return digest.hexdigest()[:24]


def cache_root() -> Path:
    """Where on-the-fly exports are kept: ``$KOEMBED_CACHE_DIR`` or ``~/.cache/koembed``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "koembed").expanduser()


def cached_export(model: SentenceTransformer, backend: str, source: dict[str, str] | None = None) -> Path:
    """The export folder of ``model`` for ``backend`` in the cache, exporting it first if it is not there."""
    folder = cache_root() / "onnx" / f"{backend}-{weights_key(model, backend)}"
    if not is_export(folder):
        export_onnx(model, folder, backend, source=source, overwrite=True)
    return folder


class GraphEncoder:
    """An exported model run by a graph runtime, with the parts of the SentenceTransformer interface koembed uses:
    what :class:`OnnxEncoder` (onnxruntime) and :class:`koembed.models.openvino.OpenVinoEncoder` share.

    ``encode`` returns float32 embeddings exactly as the exported pipeline computes them (normalised if the
    model normalises). ``max_seq_length`` may be changed between calls (truncation happens in the
    tokenizer); it cannot exceed the exported model's position table. The graph files' sha256 are checked on
    load (a few seconds for bge-m3's 2.2 GB). ``backend`` is what runs it (``onnx-int8``: what an index records
    to reload it), ``label`` what stored embeddings record as its precision (the backend, unless a runtime
    says more: ``openvino-bf16``).
    A runtime implements :meth:`_run` (one padded batch of int64 inputs -> embeddings).
    """

    similarity_fn_name: str
    backend: str

    def __init__(self, folder: str | Path) -> None:
        from transformers import AutoTokenizer

        self.folder = Path(folder).expanduser()
        meta = read_meta(self.folder)
        remedy = "the export was changed or damaged; export the model again"
        self.graph = inside(self.folder, meta.get("file", GRAPH_FILE), ModelLoadError,
                            f"{self.folder / META_FILE}: file", remedy)
        # Exactly the graph files: the graph, and its external weights if the folder has them.
        graph_files = {self.graph.name} | ({WEIGHTS_FILE} if (self.folder / WEIGHTS_FILE).exists() else set())
        verify_files(self.folder, meta.get("files"), META_FILE, ModelLoadError, remedy=remedy, expected=graph_files)
        self.meta = meta
        self.backend = meta["backend"]
        self.similarity_fn_name = meta.get("similarity_fn_name") or "cosine"
        self.max_seq_length: int | None = meta.get("max_seq_length")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.inputs = list(meta["inputs"])
        self.device = "cpu"
        self.prompts: dict[str, str] = dict(meta.get("prompts") or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.folder)!r}, backend={self.backend!r})"

    @property
    def label(self) -> str:
        return self.backend

    def get_embedding_dimension(self) -> int:
        return int(self.meta["dimension"])

    def modules(self) -> list[Any]:
        """No torch modules: the pipeline is inside the graph (``meta['normalized']`` says if it normalises)."""
        return []

    def forward(self, features: dict[str, Any]) -> np.ndarray:
        """Embeddings of one padded batch: ``features`` holds ``input_ids`` and ``attention_mask`` (and
        ``token_type_ids``, zeros if absent), as a tokenizer returns them."""
        import numpy as np

        ids = np.asarray(features["input_ids"], dtype=np.int64)
        feed = {name: np.asarray(features[name], dtype=np.int64) if name in features else np.zeros_like(ids)
                for name in self.inputs}
        return self._run(feed)

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, sentences: Sequence[str] | str, batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, prompt: str | None = None, **_: Any) -> np.ndarray:
        """Embed ``sentences`` in input order, longest first in batches of ``batch_size`` (less padding).
        ``prompt`` is put before each text, as sentence-transformers does (the exported pooling includes it)."""
        import numpy as np

        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        if prompt:
            texts = [prompt + text for text in texts]
        out: np.ndarray = np.empty((len(texts), self.get_embedding_dimension()), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in progress(range(0, len(order), batch_size), desc="Batches", disable=not show_progress_bar):
            idx = order[start: start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=self.max_seq_length is not None,
                                 max_length=self.max_seq_length, return_tensors="np")
            out[idx] = self.forward(enc)
        return out[0] if single else out


class OnnxEncoder(GraphEncoder):
    """An ONNX export run by onnxruntime (CPU), with ``torch.get_num_threads()`` threads unless ``threads`` is
    given; see :class:`GraphEncoder`."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(folder)
        options = ort.SessionOptions()
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.graph), options, providers=["CPUExecutionProvider"])

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feed)[0]
