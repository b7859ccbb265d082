"""Build an index from passages (or stored embeddings), and change it: add and delete passages.

Everything is computed before anything is written: bad input leaves no folder behind, and a failed update
leaves the previous version current (:mod:`koembed.index.versions`). Adding an id that is already indexed is an
error (delete it first, then add): silent replacement would hide duplicate ids in the input.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.data import validate_documents
from koembed.encoding.shards import read_embeddings
from koembed.errors import DocumentIdError, IndexStoreError, ModelMismatchError
from koembed.index.analysis import bm25_analysis, index_analyzer, write_user_dict
from koembed.index.bm25_store import plan_build, plan_change
from koembed.index.encoder import checked_encoder, embed, model_record, normalized_by, probe, with_prompt
from koembed.index.faiss import compact_hnsw, faiss_index_params, new_faiss_index, normalized
from koembed.index.manifest import MANIFEST, IndexParams, Manifest, now, read_manifest, recorded_mode
from koembed.index.versions import (
    Addition,
    IndexState,
    StoredVersion,
    append,
    can_append,
    commit,
    drop,
    locked,
    require_new_folder,
    some_ids,
    update,
)
from koembed.lexical import LexicalConfig, UserDict, get_analyzer
from koembed.models import EncodeOptions, Encoder, ModelSpec, load_model
from koembed.models.m3 import has_m3_heads, m3_encoder
from koembed.models.prompts import role_options

if TYPE_CHECKING:
    import numpy as np


def build_index(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                params: IndexParams = IndexParams(), options: EncodeOptions = EncodeOptions(),
                encoder: Encoder | None = None, tokens: Sequence[Sequence[str]] | None = None) -> Manifest:
    """Embed and tokenise the passages and write a new index to ``out_dir`` (which must be new or empty).

    ``model`` (a hub id, local folder or ``minilm``, with its precision and backend) is recorded so that
    :func:`koembed.index.load_index` and :func:`add_documents` can reload it; pass ``encoder`` to reuse a model
    already loaded from it. ``params`` choose the FAISS index and the BM25 fields (:class:`IndexParams`).
    ``tokens``: the passages' tokens when already analysed by ``params.lexical.analyzer`` with
    ``params.user_dict`` (``koembed.encoding.ray_engine``), else the analyzer runs here.
    """
    spec = ModelSpec.of(model)
    doc_ids, texts, out_dir = _checked_new_build(doc_ids, texts, out_dir)
    encoder = encoder or load_model(spec)
    vectors = embed(encoder, texts, role_options(options, encoder, "passage"))
    sparse = lexical_weights(spec.name, encoder, texts, role_options(options, encoder, "passage"))
    return _write_new_index(spec.name, encoder, doc_ids, texts, vectors, out_dir, params, options.show_progress,
                            tokens, sparse)


def build_index_from_embeddings(model: ModelSpec | str, embedding_dirs: Sequence[str | Path],
                                doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                                params: IndexParams = IndexParams(), show_progress: bool = True,
                                encoder: Encoder | None = None, tokens: Sequence[Sequence[str]] | None = None
                                ) -> Manifest:
    """:func:`build_index` with the vectors read from ``koembed encode`` shards instead of computed.

    ``embedding_dirs`` are ``koembed encode --out`` folders (or shard folders); all shards of one run must be
    there and complete, made with ``model`` from exactly these passages in this order
    (:func:`koembed.encoding.shards.read_embeddings` checks it all, before anything is written). The model is still
    loaded, once, for the probe embedding and normalisation record that :func:`koembed.index.load_index`
    checks against.
    """
    spec = ModelSpec.of(model)
    doc_ids, texts, out_dir = _checked_new_build(doc_ids, texts, out_dir)
    vectors, stored = read_embeddings(embedding_dirs, doc_ids, texts, model_name=spec.name)
    if stored.get("passage_prompt") != spec.passage_prompt:
        raise ModelMismatchError(f"the embeddings were made with passage prompt {stored.get('passage_prompt')!r}, "
                                 f"not {spec.passage_prompt!r}: build with the prompt they were encoded with")
    encoder = encoder or load_model(spec)
    dimension = probe(encoder).shape[0]
    if dimension != stored["dimension"]:
        raise ModelMismatchError(f"the embeddings have {stored['dimension']} dimensions but {spec.name} gives "
                                 f"{dimension}: they were not made by this model")
    return _write_new_index(spec.name, encoder, doc_ids, texts, normalized(vectors), out_dir, params, show_progress,
                            tokens)


def _checked_new_build(doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path
                       ) -> tuple[list[str], list[str], Path]:
    """The checks every build makes before any work: valid passages, a new output folder."""
    doc_ids, texts = validate_documents(doc_ids, texts)
    out_dir = Path(out_dir)
    require_new_folder(out_dir)
    return doc_ids, texts, out_dir


def _write_new_index(model_name: str, encoder: Encoder, doc_ids: list[str], texts: list[str], vectors: np.ndarray,
                     out_dir: Path, params: IndexParams, show_progress: bool,
                     tokens: Sequence[Sequence[str]] | None = None,
                     sparse: list[dict[int, float]] | None = None) -> Manifest:
    """Tokenise, build FAISS from normalised float32 ``vectors`` (row i = passage i) and commit version 1."""
    import numpy as np

    if tokens is None:
        tokens = get_analyzer(params.lexical.analyzer, params.user_dict)(texts, show_progress=show_progress)
    elif len(tokens) != len(texts):
        raise IndexStoreError(f"{len(tokens)} token lists for {len(texts)} passages")
    token_lists = [list(t) for t in tokens]
    recorded = faiss_index_params(params, len(texts))
    index = new_faiss_index(params.kind, vectors.shape[1], recorded, vectors)
    pids = list(range(len(doc_ids)))
    index.add_with_ids(vectors, np.array(pids, dtype=np.int64))
    created = now()
    manifest = Manifest(kind=params.kind, params=recorded, model=model_record(model_name, encoder),
                        dimension=int(vectors.shape[1]), normalized_by=normalized_by(encoder),
                        bm25=bm25_record(params.lexical, params.user_dict), counts={"passages": len(pids), "deleted": 0, "tombstones": 0},
                        next_id=len(pids), created=created, updated=created, fusion=dict(params.fusion),
                        mode=recorded_mode(params))
    state = IndexState(manifest, index, pids, doc_ids, texts, token_lists, set(), sparse)
    plan_build(state)
    new_folder = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with locked(out_dir):
            require_new_folder(out_dir)  # another build may have won the race
            write_user_dict(out_dir, params.user_dict)
            return commit(out_dir, state)
    except BaseException:
        if new_folder and not (out_dir / MANIFEST).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def lexical_weights(name: str, encoder: Encoder, texts: Sequence[str], options: EncodeOptions
                    ) -> list[dict[int, float]] | None:
    """BGE-M3 lexical weights of the passages (``options.prompt`` before each) when the model folder holds
    bge-m3's heads: the index then serves ``sparse`` search from an in-memory inverted index; None otherwise."""
    if not has_m3_heads(name) or getattr(encoder, "backend", "torch") != "torch":
        return None
    return m3_encoder(name, encoder).encode(texts, options, None, dense=False, colbert=False).sparse


def bm25_record(lexical: LexicalConfig, user_dict: UserDict | None = None) -> dict[str, Any]:
    """The manifest's record of the BM25 half: the stored analysis, and the fields and weights scored on it."""
    return bm25_analysis(lexical, user_dict)


def add_documents(index_dir: str | Path, doc_ids: Sequence[str], texts: Sequence[str], *,
                  encoder: Encoder | None = None, options: EncodeOptions = EncodeOptions(show_progress=False)
                  ) -> Manifest:
    """Add passages to an index as a new version. An id already in the index is a :class:`DocumentIdError`
    (delete it first, then add). The model is reloaded from the manifest unless ``encoder`` is given (it is
    checked against the index either way).

    The new version holds the new passages and vectors as one more part beside hard links to the stored ones
    (:func:`koembed.index.versions.append`): an add costs what the new passages cost, not the index's size.
    An index without a row table or BM25 segments, an IVF index, one at :data:`koembed.index.manifest.MAX_PARTS` parts or one holding
    BGE-M3 lexical weights is rewritten whole instead, as one part."""
    doc_ids, texts = validate_documents(doc_ids, texts)
    index_dir = Path(index_dir)
    manifest = read_manifest(index_dir)
    if can_append(manifest) and not has_m3_heads(manifest.model["resolved"]):
        def prepare(current: StoredVersion) -> Addition:
            clashes = [d for d in doc_ids if current.rows.find(d) is not None]
            if clashes:
                raise DocumentIdError(f"{index_dir}: already indexed: {some_ids(clashes)}; delete them first "
                                      "(koembed index delete), then add")
            vectors = embed(checked_encoder(encoder, current.manifest, index_dir), texts,
                            with_prompt(options, current.manifest, "passage"))
            tokens = index_analyzer(index_dir, current.manifest.bm25)(texts, show_progress=options.show_progress)
            return Addition(doc_ids, texts, tokens, vectors)

        return append(index_dir, prepare)

    def change(state: IndexState) -> None:
        import numpy as np

        present = set(state.doc_ids)
        clashes = [d for d in doc_ids if d in present]
        if clashes:
            raise DocumentIdError(f"{index_dir}: already indexed: {some_ids(clashes)}; delete them first "
                                  "(koembed index delete), then add")
        vectors = embed(checked_encoder(encoder, state.manifest, index_dir), texts,
                        with_prompt(options, state.manifest, "passage"))
        new_pids = list(range(state.manifest.next_id, state.manifest.next_id + len(doc_ids)))
        state.faiss_index.add_with_ids(vectors, np.array(new_pids, dtype=np.int64))
        state.pids += new_pids
        state.doc_ids += doc_ids
        state.texts += texts
        state.tokens += index_analyzer(index_dir, state.manifest.bm25)(texts, show_progress=options.show_progress)
        if state.sparse is not None:
            state.sparse += lexical_weights(state.manifest.model["resolved"], checked_encoder(
                encoder, state.manifest, index_dir), texts, with_prompt(options, state.manifest, "passage")) or []
        state.manifest.next_id += len(doc_ids)
        plan_change(state, new_pids)

    return update(index_dir, change)


def delete_documents(index_dir: str | Path, doc_ids: Sequence[str]) -> Manifest:
    """Delete passages by id as a new version. An id the index does not hold is a :class:`DocumentIdError`
    naming it, and nothing is deleted.

    Written like an add (:func:`koembed.index.versions.drop`): the row table without the deleted rows, their vectors
    as tombstones, the stored files linked; the version is rewritten instead (deleted rows and vectors gone) when
    tombstones would pass half the vectors, and for the indexes :func:`add_documents` rewrites."""
    index_dir = Path(index_dir)
    wanted = list(dict.fromkeys(doc_ids))
    if not wanted:
        raise DocumentIdError(f"{index_dir}: no ids to delete")
    dropped = drop(index_dir, wanted) if can_append(read_manifest(index_dir)) else None
    if dropped is not None:
        return dropped

    def change(state: IndexState) -> None:
        import numpy as np

        row_of = {doc: row for row, doc in enumerate(state.doc_ids)}
        unknown = [d for d in wanted if d not in row_of]
        if unknown:
            raise DocumentIdError(f"{index_dir}: no passage with id {some_ids(unknown)}; nothing was deleted")
        dead = {row_of[d] for d in wanted}
        gone = np.array([state.pids[r] for r in sorted(dead)], dtype=np.int64)
        if state.manifest.kind == "hnsw":  # HNSW graphs cannot remove nodes: skip them at search time
            state.tombstones.update(int(p) for p in gone)
        else:  # with the tombstones earlier part-wise deletes left
            state.faiss_index.remove_ids(np.concatenate([gone, np.fromiter(state.tombstones, dtype=np.int64)]))
            state.tombstones = set()
        keep = [r for r in range(len(state.pids)) if r not in dead]
        for name in ("pids", "doc_ids", "texts", "tokens", "sparse"):
            values = getattr(state, name)
            if values is not None:
                setattr(state, name, [values[r] for r in keep])
        state.manifest.counts["deleted"] += len(dead)
        if state.tombstones and len(state.tombstones) > state.faiss_index.ntotal / 2:
            state.faiss_index = compact_hnsw(state.faiss_index, state.manifest.dimension, state.manifest.params,
                                             state.tombstones)
            state.tombstones = set()
        plan_change(state)

    return update(index_dir, change)


