"""Build a Qdrant index (from passages, stored embeddings, or an existing FAISS index), add and delete passages.

The same rules as the FAISS store (:mod:`koembed.index.build`): input is validated and the model checked
before the collection changes, an id already indexed cannot be added (delete it first), an unknown id cannot
be deleted. Vectors and BM25 weights are computed and uploaded batch by batch, so a corpus larger than memory
streams through (from ``koembed encode`` chunks it is never held whole). How a crash is survived:
:mod:`koembed.index.qdrant`. With a bge-m3-layout model every batch also gets its BGE-M3 lexical weights and
ColBERT vectors (:mod:`koembed.index.qdrant_m3`; a second forward pass, as the FAISS store's lexical weights).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.data import validate_documents
from koembed.encoding.shards import embedding_chunks
from koembed.errors import DocumentIdError, IndexStoreError, ModelMismatchError
from koembed.files import staged_folder
from koembed.index.analysis import index_analyzer, recorded_user_dict, write_user_dict
from koembed.index.encoder import checked_encoder, embed, model_record, normalized_by, probe, with_prompt
from koembed.index.faiss import normalized
from koembed.index.manifest import MANIFEST, now
from koembed.index.qdrant import (
    LOCAL_DIR,
    UPSERT_BATCH,
    QdrantManifest,
    QdrantTarget,
    bm25_record,
    check_collection,
    connected,
    create_collection,
    durable,
    existing_ids,
    live_count,
    read_qdrant_manifest,
    recover,
    upsert_passages,
    write_qdrant_manifest,
)
from koembed.index.qdrant_m3 import m3_record, passage_m3
from koembed.index.qdrant_sparse import average_lengths
from koembed.index.versions import locked, read_state, require_new_folder, some_ids
from koembed.lexical import DEFAULT as DEFAULT_LEXICAL
from koembed.lexical import LexicalConfig, UserDict, get_analyzer
from koembed.models import EncodeOptions, Encoder, ModelSpec, load_model
from koembed.models.m3 import M3Encoder, M3Output, m3_encoder
from koembed.models.prompts import role_options
from koembed.progress import progress

if TYPE_CHECKING:
    import numpy as np

Batches = Iterable[tuple[int, "np.ndarray"]]  # (first row, normalised float32 vectors of the next rows)
ENCODE_BLOCK = 1024  # passages embedded per upload round when the index encodes them itself


@dataclass
class M3Passages:
    """Where an upload gets each batch's BGE-M3 outputs: ``encoder`` (``options`` carry the passage prompt), or
    for the lexical weights a FAISS index's ``stored`` ones (row-aligned with the upload)."""

    encoder: M3Encoder
    options: EncodeOptions
    stored: list[dict[int, float]] | None = None

    def outputs(self, start: int, texts: list[str]) -> M3Output:
        out = self.encoder.encode(texts, self.options, None, dense=False, sparse=self.stored is None)
        if self.stored is not None:
            out.sparse = self.stored[start: start + len(texts)]
        return out


def build_qdrant_index(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path,
                       target: QdrantTarget = QdrantTarget(), *, options: EncodeOptions = EncodeOptions(),
                       encoder: Encoder | None = None, tokens: Sequence[Sequence[str]] | None = None,
                       embedding_dirs: Sequence[str | Path] | None = None,
                       lexical: LexicalConfig = DEFAULT_LEXICAL, user_dict: UserDict | None = None
                       ) -> QdrantManifest:
    """A new Qdrant index in ``out_dir`` (new or empty): embed (or take from ``embedding_dirs``, ``koembed
    encode`` output) and tokenise the passages, then upload them to a new collection (:class:`QdrantTarget`).

    ``tokens``: the passages' tokens when already analysed (``--engine ray``), else ``lexical.analyzer`` (with
    ``user_dict``, copied into the index) runs here.
    ``lexical``: the BM25 fields, weights and analyzer (as the FAISS store's; normalization must be none).
    A bge-m3-layout model (not with ``embedding_dirs``) also gives each passage its BGE-M3 lexical weights and
    ColBERT vectors (:mod:`koembed.index.qdrant_m3`).
    """
    spec = ModelSpec.of(model)
    doc_ids, texts = validate_documents(doc_ids, texts)
    out_dir = Path(out_dir)
    require_new_folder(out_dir)
    stored = embedding_chunks(embedding_dirs, doc_ids, texts, model_name=spec.name) if embedding_dirs else None
    encoder = encoder or load_model(spec)
    dimension = int(probe(encoder).shape[0])
    if stored is not None and stored[0]["dimension"] != dimension:
        raise ModelMismatchError(f"the embeddings have {stored[0]['dimension']} dimensions but {spec.name} gives "
                                 f"{dimension}: they were not made by this model")
    if tokens is None:
        tokens = get_analyzer(lexical.analyzer, user_dict)(texts, show_progress=options.show_progress)
    _check_tokens(texts, tokens)
    if stored is not None:
        batches: Batches = ((row, normalized(chunk)) for row, chunk in stored[1])
    else:
        batches = _encoded(encoder, texts, options)
    m3 = passage_m3(spec.name, encoder) if stored is None else None  # as FAISS: from embeddings, dense only
    m3_passages = M3Passages(m3, role_options(options.quiet(), encoder, "passage")) if m3 is not None else None
    return write_new(out_dir, target, model_record(spec.name, encoder), dimension, normalized_by(encoder), doc_ids,
                     texts, tokens, batches, options.show_progress, lexical, m3_passages, user_dict)


def export_faiss_index(faiss_dir: str | Path, out_dir: str | Path, target: QdrantTarget = QdrantTarget(), *,
                       show_progress: bool = True) -> QdrantManifest:
    """Copy a FAISS index (its vectors, passages and stored tokens and user dictionary) into a new Qdrant index, without
    encoding or analysing anything again; the model record is the FAISS index's, so the same checks apply.

    A FAISS index built with a bge-m3-layout model holds the BGE-M3 lexical weights (copied) but not the ColBERT
    vectors: the index's model is loaded (and checked) and the passages are encoded again for them."""
    import faiss

    faiss_dir, out_dir = Path(faiss_dir), Path(out_dir)
    state = read_state(faiss_dir)
    require_new_folder(out_dir)
    index = state.faiss_index
    if state.manifest.kind == "ivf":
        faiss.extract_index_ivf(index).make_direct_map()

    def batches() -> Iterator[tuple[int, np.ndarray]]:
        import numpy as np

        for start in range(0, len(state.pids), ENCODE_BLOCK):
            pids = np.array(state.pids[start: start + ENCODE_BLOCK], dtype=np.int64)
            yield start, normalized(index.reconstruct_batch(pids))

    m = state.manifest
    m3_passages = None
    if state.sparse is not None:
        m3 = passage_m3(m.model["resolved"], checked_encoder(None, m, faiss_dir))
        if m3 is None:
            raise IndexStoreError(f"{faiss_dir} holds BGE-M3 lexical weights but its model {m.model['name']} has no "
                                  "sparse_linear.pt and colbert_linear.pt now: the ColBERT vectors cannot be made")
        options = with_prompt(EncodeOptions(show_progress=False), m, "passage")
        m3_passages = M3Passages(m3, options, state.sparse)
    return write_new(out_dir, target, m.model, m.dimension, m.normalized_by, state.doc_ids, state.texts,
                     state.tokens, batches(), show_progress, LexicalConfig.from_dict(m.bm25), m3_passages,
                     recorded_user_dict(faiss_dir, m.bm25))


def write_new(out_dir: Path, target: QdrantTarget, model: dict[str, Any], dimension: int, normed_by: str,
              doc_ids: list[str], texts: list[str], tokens: Sequence[Sequence[str]], batches: Batches,
              show_progress: bool, lexical: LexicalConfig = DEFAULT_LEXICAL, m3: M3Passages | None = None,
              user_dict: UserDict | None = None) -> QdrantManifest:
    """Create the collection, upload every batch, then write the manifest (which makes the index exist).

    The embedded engine's storage in the index folder is built in a staged folder and renamed into place; elsewhere (``--url``,
    ``--path``) a failed build drops the collection it created and leaves no manifest.
    """
    created = now()
    manifest = QdrantManifest(collection=target.collection, local_path=None, url=target.url,
                              build_id=uuid.uuid4().hex, model=model,
                              dimension=dimension, normalized_by=normed_by,
                              bm25=bm25_record(lexical, average_lengths(lexical, tokens, texts), user_dict),
                              layout={},
                              counts={"passages": 0, "deleted": 0}, created=created, updated=created,
                              m3=m3_record(m3.encoder) if m3 is not None else None)
    if target.url is None and target.path is None:
        manifest.local_path = LOCAL_DIR
        with staged_folder(out_dir) as stage:
            write_user_dict(stage, user_dict)
            _fill(stage, target, manifest, doc_ids, texts, tokens, batches, show_progress, m3)
        return manifest
    manifest.local_path = str(Path(target.path).resolve()) if target.path else None
    new_folder = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out_dir):
            require_new_folder(out_dir)
            write_user_dict(out_dir, user_dict)
            _fill(out_dir, target, manifest, doc_ids, texts, tokens, batches, show_progress, m3)
    except BaseException:
        if new_folder and not (out_dir / MANIFEST).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return manifest


def _fill(folder: Path, target: QdrantTarget, manifest: QdrantManifest, doc_ids: list[str], texts: list[str],
          tokens: Sequence[Sequence[str]], batches: Batches, show_progress: bool, m3: M3Passages | None) -> None:
    with connected(folder, manifest.local_path, manifest.url, target.api_key) as client:
        manifest.layout = create_collection(client, target, manifest)
        try:  # the build's points carry its id as their txn: unique, never a pending add's
            _upload(client, manifest, doc_ids, texts, tokens, batches, manifest.build_id, show_progress, m3)
            manifest.counts["passages"] = live_count(client, manifest.collection)
            durable(client)
            write_qdrant_manifest(folder, manifest)
        except BaseException:
            client.delete_collection(manifest.collection)
            raise


def add_qdrant_documents(index_dir: str | Path, doc_ids: Sequence[str], texts: Sequence[str], *,
                         encoder: Encoder | None = None, options: EncodeOptions = EncodeOptions(show_progress=False),
                         tokens: Sequence[Sequence[str]] | None = None, api_key: str | None = None) -> QdrantManifest:
    """Add passages (ids must be new). Recorded as pending before the upload: a crash is undone next time."""
    doc_ids, texts = validate_documents(doc_ids, texts)
    index_dir = Path(index_dir)
    with _changing(index_dir, api_key) as (client, manifest):
        clashes = existing_ids(client, manifest.collection, doc_ids)
        if clashes:
            raise DocumentIdError(f"{index_dir}: already indexed: {some_ids(clashes)}; delete them first "
                                  "(koembed index delete), then add")
        encoder = checked_encoder(encoder, manifest, index_dir)
        if tokens is None:
            tokens = index_analyzer(index_dir, manifest.bm25)(texts, show_progress=options.show_progress)
        _check_tokens(texts, tokens)
        txn = uuid.uuid4().hex
        manifest.pending = {"op": "add", "txn": txn, "passages": len(doc_ids)}
        write_qdrant_manifest(index_dir, manifest)
        m3 = None
        if manifest.m3:
            m3 = M3Passages(m3_encoder(manifest.model["resolved"], encoder),
                            with_prompt(options.quiet(), manifest, "passage"))
        _upload(client, manifest, doc_ids, texts, tokens, _encoded(encoder, texts, options), txn,
                options.show_progress, m3)
        manifest.pending = None
        manifest.counts["passages"] = live_count(client, manifest.collection)
        durable(client)
        write_qdrant_manifest(index_dir, manifest)
        return manifest


def delete_qdrant_documents(index_dir: str | Path, doc_ids: Sequence[str], *, api_key: str | None = None
                            ) -> QdrantManifest:
    """Delete passages by id; an id the index does not hold is a :class:`DocumentIdError` and nothing changes."""
    index_dir = Path(index_dir)
    wanted = list(dict.fromkeys(doc_ids))
    if not wanted:
        raise DocumentIdError(f"{index_dir}: no ids to delete")
    with _changing(index_dir, api_key) as (client, manifest):
        present = set(existing_ids(client, manifest.collection, wanted))
        unknown = [d for d in wanted if d not in present]
        if unknown:
            raise DocumentIdError(f"{index_dir}: no passage with id {some_ids(unknown)}; nothing was deleted")
        manifest.pending = {"op": "delete", "ids": wanted}
        write_qdrant_manifest(index_dir, manifest)
        recover(client, manifest)  # finishing a pending delete is the delete
        durable(client)
        write_qdrant_manifest(index_dir, manifest)
        return manifest


@contextmanager
def _changing(index_dir: Path, api_key: str | None) -> Iterator[tuple[Any, QdrantManifest]]:
    """Under the folder's lock: an open client on the checked collection and the manifest, with whatever an
    interrupted change left finished first."""
    if not (index_dir / MANIFEST).is_file():
        raise IndexStoreError(f"{index_dir}: no {MANIFEST}; not a koembed index (build one with koembed index build)")
    with locked(index_dir):
        manifest = read_qdrant_manifest(index_dir)
        with connected(index_dir, manifest.local_path, manifest.url, api_key) as client:
            check_collection(client, manifest, index_dir)
            if recover(client, manifest):
                durable(client)
                write_qdrant_manifest(index_dir, manifest)
            yield client, manifest


def _check_tokens(texts: list[str], tokens: Sequence[Sequence[str]]) -> None:
    if len(tokens) != len(texts):
        raise IndexStoreError(f"{len(tokens)} token lists for {len(texts)} passages")


def _encoded(encoder: Encoder, texts: list[str], options: EncodeOptions) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(texts), ENCODE_BLOCK):
        yield start, embed(encoder, texts[start: start + ENCODE_BLOCK], role_options(options.quiet(), encoder,
                                                                                       "passage"))


def _upload(client: Any, manifest: QdrantManifest, doc_ids: list[str], texts: list[str],
            tokens: Sequence[Sequence[str]], batches: Batches, txn: str, show_progress: bool,
            m3: M3Passages | None = None) -> None:
    with progress(total=len(doc_ids), desc=f"Qdrant {manifest.collection}", unit="passage",
              disable=not show_progress) as bar:
        for start, vectors in batches:
            if vectors.shape[1] != manifest.dimension:
                raise ModelMismatchError(f"vectors of dimension {vectors.shape[1]} for an index of "
                                         f"{manifest.dimension}")
            for a in range(0, len(vectors), UPSERT_BATCH):
                rows = slice(start + a, start + min(a + UPSERT_BATCH, len(vectors)))
                outputs = m3.outputs(rows.start, texts[rows]) if m3 is not None else None
                upsert_passages(client, manifest, doc_ids[rows], texts[rows], tokens[rows],
                                vectors[a: a + UPSERT_BATCH], txn, outputs)
                bar.update(rows.stop - rows.start)
