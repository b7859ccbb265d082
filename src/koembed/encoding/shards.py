"""The embedding store: a corpus encoded to files on disk, in shards and chunks, resumable; read back for an index.

Layout written by :func:`encode_corpus` (one folder per shard, so n machines can each write one)::

    OUT/shard-{i}-of-{n}/
      manifest.json           model, dimension, precision, dtype, corpus fingerprint, chunk size, finished chunks
      chunk-000000.npy        float32 or float16 (rows, dimension), np.save without pickle
      chunk-000000.ids.json   the passage ids of those rows, in order

Sharding is by position: shard i of n holds passages ``[N*i//n, N*(i+1)//n)`` of the corpus as
:func:`koembed.data.load_documents` returns it, so concatenating shards 0..n-1 gives the corpus order.
Each chunk's files are written atomically, then the manifest lists the chunk (with sha256s); a crash leaves
at most an unlisted chunk, which the next run re-encodes. Rerunning the same command resumes: listed chunks
whose files still match are skipped. A different corpus, model, precision, dtype or chunk size in the
same folder is an :class:`EmbeddingStoreError` rather than a silent mix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import EmbeddingStoreError
from koembed.files import (
    atomic_open,
    checksums,
    first_damaged,
    listed_files,
    read_manifest,
    remove_staged,
    write_json,
)
from koembed.models import (
    ModelSpec,
    expected_precision,
    model_identity,
)

if TYPE_CHECKING:
    import numpy as np


log = logging.getLogger(__name__)


FORMAT = "koembed-embeddings"


FORMAT_VERSION = 1


MANIFEST = "manifest.json"


DTYPES = ("float32", "float16")


SHARD_RE = re.compile(r"^shard-(\d+)-of-(\d+)$")


# Fields of a shard manifest that must equal the current run's for its chunks to be reused.
IDENTITY_FIELDS = ("format", "format_version", "model", "precision", "dtype", "chunk_size", "corpus", "shard",
                   "passage_prompt")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based i) as ``(i, n)``; anything else is a :class:`EmbeddingStoreError`."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise EmbeddingStoreError(f"--shard wants i/n, e.g. 0/4 (shard 0 of 4), not {text!r}")
    index, count = int(match[1]), int(match[2])
    _check_shard(index, count)
    return index, count


def _check_shard(index: int, count: int) -> None:
    if count < 1 or not 0 <= index < count:
        raise EmbeddingStoreError(f"shard {index}/{count}: need 0 <= i < n (shards are numbered from 0)")


def shard_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of shard ``index`` of ``count``: contiguous, sizes differ by at most one."""
    return total * index // count, total * (index + 1) // count


def shard_name(index: int, count: int) -> str:
    return f"shard-{index}-of-{count}"


def corpus_fingerprint(doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """sha256 of the ids and texts in order (each pair JSON-encoded, so no two corpora collide by concatenation)."""
    digest = hashlib.sha256()
    for doc_id, text in zip(doc_ids, texts, strict=True):
        digest.update(json.dumps([doc_id, text], ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _chunk_files(k: int) -> tuple[str, str]:
    return f"chunk-{k:06d}.npy", f"chunk-{k:06d}.ids.json"


def _read_manifest(path: Path) -> dict[str, Any]:
    """A shard manifest, its chunk entries checked: each names exactly its own two files (plain names)."""
    remedy = "remove the shard folder and re-encode"
    manifest = read_manifest(path, EmbeddingStoreError, format=FORMAT, version=FORMAT_VERSION, remedy=remedy)
    chunks = manifest.get("chunks")
    if not isinstance(chunks, list) or not all(isinstance(entry, dict) for entry in chunks):
        raise EmbeddingStoreError(f"{path}: 'chunks' must be a list of objects; {remedy}")
    for entry in chunks:
        k, rows, names = entry.get("chunk"), entry.get("rows"), (entry.get("file"), entry.get("ids"))
        if not (type(k) is int and type(rows) is int and k >= 0 and rows >= 1
                and all(isinstance(n, str) for n in names)):
            raise EmbeddingStoreError(f"{path}: chunk entry {k!r} needs a chunk number, a row count and its two "
                                      f"file names; {remedy}")
        listed_files({entry.get("file"): entry.get("sha256"), entry.get("ids"): entry.get("ids_sha256")},
                     _chunk_files(k), EmbeddingStoreError, f"{path} (chunk {k})", remedy)
    return manifest


def _chunk_ok(shard_dir: Path, entry: dict[str, Any], expected_ids: Sequence[str]) -> bool:
    """A listed chunk is reusable if both files exist, match their sha256, and hold the expected ids."""
    if first_damaged(shard_dir, {entry["file"]: entry["sha256"], entry["ids"]: entry["ids_sha256"]}):
        return False
    try:
        ids = json.loads((shard_dir / entry["ids"]).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return entry["rows"] == len(expected_ids) and ids == list(expected_ids)


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """A message naming the first identity field that differs between a stored manifest and this run."""
    for name in IDENTITY_FIELDS:
        if name == "model":
            if old["model"]["resolved"] != new["model"]["resolved"]:
                return f"model {old['model']['name']!r} there, {new['model']['name']!r} now"
        elif old.get(name) != new[name]:
            what = "corpus (ids or texts changed)" if name == "corpus" else name.replace("_", " ")
            return f"{what}: {old.get(name)!r} there, {new[name]!r} now"
    return None


@dataclass
class ShardPlan:
    """One shard of an encode run, opened for writing: which chunks are done and which are left.

    ``bounds[k]`` are chunk k's corpus rows ``[a, b)``; ``pending`` the chunks still to encode, in order;
    ``skipped`` how many a previous run finished. :func:`record_chunk` adds a chunk. Any engine that encodes
    (this module's loop, :mod:`koembed.encoding.ray_engine`'s actors) writes through these two, so the layout and the
    resume rule are one.
    """

    shard_dir: Path
    manifest: dict[str, Any]
    bounds: list[tuple[int, int]]
    pending: list[int]
    skipped: int

    @property
    def start(self) -> int:
        return self.manifest["shard"]["start"]

    @property
    def stop(self) -> int:
        return self.manifest["shard"]["stop"]


def open_shard(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
               shard: tuple[int, int] = (0, 1), dtype: str = "float32", chunk_size: int = 4096,
               precision: str | None = None) -> ShardPlan:
    """Check the options, then open (or resume) shard ``(i, n)`` of the corpus in ``out_dir``.

    ``precision`` is the resolved precision the vectors are made in (None: what ``model`` resolves to here).
    Listed chunks whose files still match are kept; a stored run with other options is an
    :class:`EmbeddingStoreError` naming the difference.
    """
    spec = ModelSpec.of(model)
    index, count = shard
    _check_shard(index, count)
    if dtype not in DTYPES:
        raise EmbeddingStoreError(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}")
    if chunk_size < 1:
        raise EmbeddingStoreError("chunk size must be at least 1")
    if len(doc_ids) != len(texts) or not doc_ids:
        raise EmbeddingStoreError(f"{len(doc_ids)} ids and {len(texts)} texts: need as many, and at least one")
    if count > len(doc_ids):
        raise EmbeddingStoreError(f"{count} shards for {len(doc_ids)} passages: use at most one shard per passage")
    resolved = precision if precision is not None else expected_precision(spec)
    start, stop = shard_bounds(len(doc_ids), index, count)
    shard_dir = Path(out_dir) / shard_name(index, count)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model_identity(spec.name),
              "precision": resolved, "dtype": dtype, "chunk_size": chunk_size,
              "corpus": {"fingerprint": corpus_fingerprint(doc_ids, texts), "passages": len(doc_ids)},
              "shard": {"index": index, "count": count, "start": start, "stop": stop},
              "passage_prompt": spec.passage_prompt}
    manifest: dict[str, Any] = {**header, "dimension": None, "chunks": [], "complete": False}
    if (shard_dir / MANIFEST).exists():
        stored = _read_manifest(shard_dir / MANIFEST)
        problem = _mismatch(stored, header)
        if problem:
            raise EmbeddingStoreError(f"{shard_dir} holds embeddings of another run ({problem}): rerun with the "
                                      "same options, or encode into a new --out folder")
        manifest = {**stored, **header}
    bounds = [(a, min(a + chunk_size, stop)) for a in range(start, stop, chunk_size)]
    listed = {entry["chunk"]: entry for entry in manifest["chunks"]}
    done = {k for k, entry in listed.items()
            if k < len(bounds) and _chunk_ok(shard_dir, entry, doc_ids[bounds[k][0]: bounds[k][1]])}
    for k in sorted(set(listed) - done):
        log.warning("%s: chunk %d is missing or damaged; encoding it again", shard_dir, k)
    manifest["chunks"] = [listed[k] for k in sorted(done)]
    manifest["complete"] = len(done) == len(bounds)
    shard_dir.mkdir(parents=True, exist_ok=True)
    remove_staged(shard_dir)  # partial chunk files of a killed run
    write_json(shard_dir / MANIFEST, manifest)
    return ShardPlan(shard_dir, manifest, bounds, [k for k in range(len(bounds)) if k not in done], len(done))


def record_chunk(plan: ShardPlan, k: int, vectors: np.ndarray, doc_ids: Sequence[str]) -> None:
    """Write chunk ``k`` (``vectors`` of the rows ``plan.bounds[k]``, whose ids are ``doc_ids``) atomically,
    then list it in the shard's manifest: a crash in between leaves it unlisted, to be encoded again."""
    a, b = plan.bounds[k]
    if len(vectors) != b - a or len(doc_ids) != b - a:
        raise EmbeddingStoreError(f"{plan.shard_dir}: chunk {k} wants {b - a} rows, got {len(vectors)} vectors "
                                  f"for {len(doc_ids)} ids")
    manifest = plan.manifest
    manifest["chunks"].append(_write_chunk(plan.shard_dir, k, vectors, doc_ids, manifest["dtype"], manifest))
    manifest["chunks"].sort(key=lambda entry: entry["chunk"])
    manifest["complete"] = len(manifest["chunks"]) == len(plan.bounds)
    write_json(plan.shard_dir / MANIFEST, manifest)


def _write_chunk(shard_dir: Path, k: int, vectors: np.ndarray, ids: Sequence[str], dtype: str,
                 manifest: dict[str, Any]) -> dict[str, Any]:
    """Write one chunk's vectors and ids atomically; returns its manifest entry (sets the dimension)."""
    import numpy as np

    if manifest["dimension"] is None:
        manifest["dimension"] = int(vectors.shape[1])
    elif vectors.shape[1] != manifest["dimension"]:
        raise EmbeddingStoreError(f"{shard_dir}: chunk {k} has dimension {vectors.shape[1]}, earlier chunks "
                                  f"{manifest['dimension']}")
    stored: np.ndarray = vectors.astype(dtype)
    if not np.isfinite(stored).all():
        raise EmbeddingStoreError(f"{shard_dir}: chunk {k} has values beyond {dtype}'s range; use --dtype float32")
    vec_name, ids_name = _chunk_files(k)
    with atomic_open(shard_dir / vec_name, "wb") as handle:
        np.save(handle, stored, allow_pickle=False)
    write_json(shard_dir / ids_name, list(ids))
    sums = checksums(shard_dir, (vec_name, ids_name))
    return {"chunk": k, "file": vec_name, "ids": ids_name, "rows": len(ids), "sha256": sums[vec_name],
            "ids_sha256": sums[ids_name]}


def _find_shards(dirs: Sequence[str | Path]) -> list[Path]:
    """Shard folders in ``dirs``: each is a shard folder itself (has manifest.json) or holds ``shard-*-of-*``."""
    found: list[Path] = []
    for d in map(Path, dirs):
        if (d / MANIFEST).is_file():
            found.append(d)
        elif d.is_dir():
            found += sorted(p for p in d.iterdir() if p.is_dir() and SHARD_RE.match(p.name))
        else:
            raise EmbeddingStoreError(f"{d}: no such folder of embeddings (made by koembed encode --out)")
    if not found:
        raise EmbeddingStoreError(f"no shard folders (shard-i-of-n) in {', '.join(map(str, dirs))}")
    return found


def embedding_chunks(dirs: Sequence[str | Path], doc_ids: Sequence[str], texts: Sequence[str],
                     model_name: str | None = None) -> tuple[dict[str, Any], Iterator[tuple[int, np.ndarray]]]:
    """The stored vectors chunk by chunk: ``(manifest, iterator of (first corpus row, float32 chunk))``, so a
    store can take a corpus larger than memory.

    The shards' manifests are checked now (see :func:`read_embeddings`); each chunk's sha256 and ids as it is
    read, so a damaged chunk stops the iteration with an :class:`EmbeddingStoreError`.
    """
    import numpy as np

    doc_ids, texts = list(doc_ids), list(texts)
    shards: dict[int, tuple[Path, dict[str, Any]]] = {}
    counts: set[int] = set()
    for path in _find_shards(dirs):
        manifest = _read_manifest(path / MANIFEST)
        i, n = manifest["shard"]["index"], manifest["shard"]["count"]
        counts.add(n)
        if i in shards:
            raise EmbeddingStoreError(f"shard {i}/{n} given twice: {shards[i][0]} and {path}")
        shards[i] = (path, manifest)
    if len(counts) > 1:
        raise EmbeddingStoreError(f"shards of different splits ({', '.join(f'n={n}' for n in sorted(counts))}): "
                                  "give the shards of one koembed encode run")
    n = counts.pop()
    missing = [i for i in range(n) if i not in shards]
    if missing:
        names = ", ".join(shard_name(i, n) for i in missing)
        raise EmbeddingStoreError(f"missing {names} of {n}: run koembed encode --shard {missing[0]}/{n} "
                                  "and pass its folder too")
    first = shards[0][1]
    fingerprint = corpus_fingerprint(doc_ids, texts)
    for i in range(n):
        path, manifest = shards[i]
        if not manifest.get("complete"):
            raise EmbeddingStoreError(f"{path} is incomplete: rerun koembed encode --shard {i}/{n} to finish it")
        for name in ("model", "precision", "dtype", "dimension", "corpus"):
            if manifest.get(name) != first.get(name):
                raise EmbeddingStoreError(f"{path} and {shards[0][0]} differ in {name}: they are not one run")
        if manifest["corpus"]["fingerprint"] != fingerprint:
            raise EmbeddingStoreError(f"{path} was encoded from another corpus (fingerprint differs): pass the "
                                      "--corpus it was encoded from, or re-encode")
    if model_name is not None and first["model"]["resolved"] != model_identity(model_name)["resolved"]:
        raise EmbeddingStoreError(f"the embeddings were made with {first['model']['name']!r}, not {model_name!r}: "
                                  "an index's queries must be embedded by the corpus's model")
    if sum(entry["rows"] for i in range(n) for entry in shards[i][1]["chunks"]) != len(doc_ids):
        raise EmbeddingStoreError(f"the shards do not hold one vector per passage ({len(doc_ids)} passages)")

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        row = 0
        for i in range(n):
            path, manifest = shards[i]
            for entry in manifest["chunks"]:
                ids = doc_ids[row: row + entry["rows"]]
                if not _chunk_ok(path, entry, ids):
                    raise EmbeddingStoreError(f"{path / entry['file']}: missing, altered, or not the corpus's rows "
                                              f"{row}..{row + entry['rows'] - 1}; rerun koembed encode --shard "
                                              f"{i}/{n}")
                chunk = np.load(path / entry["file"], allow_pickle=False).astype(np.float32, copy=False)
                yield row, chunk
                row += len(chunk)

    return first, chunks()


def read_embeddings(dirs: Sequence[str | Path], doc_ids: Sequence[str], texts: Sequence[str],
                    model_name: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The stored vectors of the whole corpus as one float32 (N, dim) array in corpus order, and one manifest.

    All n shards of one run must be present once and complete; they must agree with each other and with
    ``doc_ids``/``texts`` (fingerprint, then ids row by row) and, if given, ``model_name``. Every chunk's sha256
    is checked. Any problem is an :class:`EmbeddingStoreError` naming the shard and what to run.
    """
    import numpy as np

    first, chunks = embedding_chunks(dirs, doc_ids, texts, model_name)
    vectors = np.empty((len(doc_ids), first["dimension"]), dtype=np.float32)
    for row, chunk in chunks:
        vectors[row: row + len(chunk)] = chunk
    return vectors, first
