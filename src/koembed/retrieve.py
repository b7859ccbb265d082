"""One Retriever interface: BM25, exact dense search in corpus chunks, and hybrid fusion; specs name them.

A retriever is fitted on a corpus, then returns for each query its top-k ``(doc_id, score)`` hits, best
first, ties broken by ascending doc id (:mod:`koembed.ranking`), and can score given (query, passage) pairs on
the same scale (:meth:`Retriever.score`, what hard-negative mining compares against).
Specs name retrievers on the command line:
- ``bm25``: :class:`koembed.lexical.BM25Retriever` over Kiwi content morphemes; ``bm25-char`` over character
  bigrams; ``bm25-phrase`` over weighted fields (morphemes, morpheme bigrams, character bigrams);
  ``bm25-fields:unigram=1,char=0.5@z`` any weights and normalisation (:mod:`koembed.lexical.bm25`);
- ``dense:<model>``: a hub id, local folder, or ``minilm`` (the bundled all-MiniLM-L6-v2);
- ``hybrid:<a>+<b>`` (or ``hybrid-rrf:``): reciprocal-rank fusion of two or more specs; ``hybrid-rrf@k=20:`` sets
  RRF's k, ``hybrid-rrf@1,0.5:`` weighs the retrievers;
- ``hybrid-cc:``, ``hybrid-z:``, ``hybrid-dbsf:``: weighted sums of min-max, z-score or 3-sigma (DBSF) normalised
  scores; ``@w1,w2,...`` one weight per retriever (``koembed tune-fusion`` fits them), or ``@0.3`` for 0.3 on the
  first and the rest sharing 0.7.
- ``m3-sparse:<model>``, ``m3-colbert:<model>``, ``m3:<model>`` / ``m3@0.4,0.2,0.4:<model>``: BGE-M3's lexical
  weights, ColBERT vectors, and FlagEmbedding's weighted sum of all three (:mod:`koembed.m3_retrieve`);
- ``rerank:<cross-encoder>@<first-stage spec>``: the first stage's top ``rerank_depth`` hits rescored by a
  cross-encoder (:mod:`koembed.rerank`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from koembed.embeddings import cached_corpus_embeddings
from koembed.errors import SpecError
from koembed.lexical import BM25Retriever, LexicalConfig, lexical_config
from koembed.m3_retrieve import M3Retriever
from koembed.models import EncodeOptions, Encoder, ModelSpec, encode, load_model
from koembed.models.m3 import M3Encoder, M3Output, load_m3, m3_weights
from koembed.models.prompts import Prompts, model_prompts, role_options
from koembed.models.rerank import load_reranker
from koembed.models.spec import ProgressFromOptions
from koembed.ranking import FUSIONS, RRF_K, TIE_SLACK, Hit, best_rows, default_weights, fuse, id_ranks
from koembed.rerank import DEFAULT_RERANK_DEPTH, RerankRetriever

if TYPE_CHECKING:
    import numpy as np

FUSION_DEPTH = 100  # candidates each child contributes to a fusion


class Retriever(Protocol):
    name: str
    show_progress: bool

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index the corpus; called once before :meth:`search`."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first."""

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs on :meth:`search`'s scale; :class:`SpecError` where a
        retriever has no such score (a fusion)."""


class DenseRetriever(ProgressFromOptions):
    """Exact nearest-neighbour search with an embedding model.

    The corpus is embedded once (n x dim float32); queries are scored against it in blocks of
    ``query_block`` x ``corpus_block``, keeping a running top-k, so memory stays at
    O(n * dim + query_block * corpus_block) and never holds a queries x corpus matrix.
    ``similarity`` is ``cosine`` or ``dot`` (sentence-transformers' ``cos_sim`` / ``dot_score``);
    ``None`` uses the model's own similarity function. ``options`` say how texts are encoded; queries and
    passages get the model's query and passage prompts (:mod:`koembed.models.prompts`).
    """

    def __init__(self, model: Encoder, name: str, similarity: str | None = None,
                 options: EncodeOptions = EncodeOptions(), query_block: int = 1024, corpus_block: int = 16384):
        self.model = model
        self.name = name
        self.similarity = similarity or getattr(model, "similarity_fn_name", None) or "cosine"
        if self.similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, not {self.similarity!r}")
        self.options = options
        self.query_block, self.corpus_block = query_block, corpus_block
        self._doc_ids: list[str] = []
        self._corpus_emb = None
        self._id_rank = None
        self._query_cache: tuple[tuple[str, ...], object] | None = None

    @property
    def prompts(self) -> Prompts:
        return model_prompts(self.model)

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.fit_embeddings(doc_ids, encode(self.model, texts, role_options(self.options, self.model, "passage")))

    def fit_embeddings(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Use corpus embeddings computed elsewhere (stored shards, a timed benchmark) instead of encoding."""
        import numpy as np
        import torch

        if len(doc_ids) != len(embeddings):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(embeddings)} embeddings")
        self._doc_ids = list(doc_ids)
        self._corpus_emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._id_rank = id_ranks(self._doc_ids)

    def with_similarity(self, similarity: str) -> DenseRetriever:
        """A view on the same fitted corpus embeddings that scores with another similarity."""
        other = DenseRetriever(self.model, self.name, similarity, self.options, self.query_block, self.corpus_block)
        other._doc_ids, other._corpus_emb, other._id_rank = self._doc_ids, self._corpus_emb, self._id_rank
        other._query_cache = self._query_cache
        return other

    def _embed_queries(self, queries: Sequence[str]):
        import torch

        key = tuple(queries)
        if self._query_cache is None or self._query_cache[0] != key:
            self._query_cache = (key, torch.from_numpy(
                encode(self.model, queries, role_options(self.options, self.model, "query"))))
        return self._query_cache[1]

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs on the search's scale, from the same embeddings."""
        from sentence_transformers.util import pairwise_cos_sim, pairwise_dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        q_emb = self._embed_queries(queries)
        pair_fn = pairwise_cos_sim if self.similarity == "cosine" else pairwise_dot_score
        values = pair_fn(q_emb[[q for q, _ in pairs]], self._corpus_emb[[r for _, r in pairs]])
        return [float(v) for v in values.tolist()]

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import torch
        from sentence_transformers.util import cos_sim, dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        score_fn = cos_sim if self.similarity == "cosine" else dot_score
        n = len(self._doc_ids)
        k = min(k, n)
        q_emb = self._embed_queries(queries)
        keep = min(n, k + TIE_SLACK)
        results: list[list[Hit]] = []
        with torch.inference_mode():
            for qs in range(0, len(queries), self.query_block):
                q = q_emb[qs: qs + self.query_block]
                best_s = torch.full((len(q), 0), float("-inf"))
                best_i = torch.zeros((len(q), 0), dtype=torch.long)
                for cs in range(0, n, self.corpus_block):
                    scores = score_fn(q, self._corpus_emb[cs: cs + self.corpus_block])
                    s, i = torch.topk(scores, min(keep, scores.shape[1]), dim=1)
                    merged_s, merged_i = torch.cat([best_s, s], 1), torch.cat([best_i, i + cs], 1)
                    best_s, pos = torch.topk(merged_s, min(keep, merged_s.shape[1]), dim=1)
                    best_i = merged_i.gather(1, pos)
                for row_s, row_i in zip(best_s.numpy(), best_i.numpy()):
                    top = best_rows(row_s, self._id_rank, k, rows=row_i)
                    results.append([(self._doc_ids[row_i[j]], float(row_s[j])) for j in top])
        return results


class HybridRetriever:
    """Fuses the rankings of two or more retrievers (:func:`koembed.ranking.fuse`).

    ``fusion``: ``rrf`` (reciprocal ranks, ``rrf_k``), ``cc`` (min-max), ``z`` (z-scores) or ``dbsf`` (3-sigma
    scale); ``weights`` one per retriever (default :func:`koembed.ranking.default_weights`). Each child
    contributes its top 100 (or k if larger).
    """

    def __init__(self, children: Sequence[Retriever], fusion: str = "rrf", weights: Sequence[float] | None = None,
                 name: str | None = None, rrf_k: int = RRF_K):
        if len(children) < 2:
            raise ValueError("a hybrid retriever needs at least two retrievers")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.children = list(children)
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weights = list(weights) if weights is not None else default_weights(fusion, len(children))
        if len(self.weights) != len(self.children):
            raise ValueError("one weight per retriever")
        self.name = name or f"hybrid-{fusion}:" + "+".join(c.name for c in children)

    @property
    def show_progress(self) -> bool:
        return any(child.show_progress for child in self.children)

    @show_progress.setter
    def show_progress(self, show: bool) -> None:
        for child in self.children:
            child.show_progress = show

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        for child in self.children:
            child.fit(doc_ids, texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, FUSION_DEPTH)
        runs = [child.search(queries, depth) for child in self.children]
        return [fuse(per_query, self.fusion, self.weights, k, self.rrf_k) for per_query in zip(*runs)]

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        raise SpecError(f"{self.name!r}: a fusion has no score for a passage outside its hits")


class RetrieverFactory:
    """Builds retrievers from specs, sharing loaded models and fitted children between specs.

    ``dense:minilm`` and ``hybrid:bm25+dense:minilm`` in one bench load the model and embed the corpus once.
    ``model`` says how dense models run (precision, backend, device; its name is replaced by each spec's model);
    ``options`` how they encode. With ``cache_dir``, corpus embeddings are stored there per model, precision and
    corpus, reused by later runs and resumed if a run was interrupted
    (:func:`koembed.embeddings.cached_corpus_embeddings`). ``rerank_depth``: candidates a ``rerank:`` spec
    rescores. The M3 specs of one model share one encoding of the corpus (all three outputs).
    """

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], model: ModelSpec = ModelSpec(""),
                 options: EncodeOptions = EncodeOptions(), cache_dir: str | Path | None = None,
                 rerank_depth: int = DEFAULT_RERANK_DEPTH):
        self.doc_ids, self.texts = list(doc_ids), list(texts)
        self.model, self.options, self.cache_dir = model, options, cache_dir
        self.rerank_depth = rerank_depth
        self._fitted: dict[str, Retriever] = {}
        self._m3: dict[str, tuple[M3Encoder, M3Output]] = {}

    def get(self, spec: str) -> Retriever:
        """A fitted retriever for ``spec``."""
        spec = spec.strip()
        if spec not in self._fitted:
            self._fitted[spec] = self._build(spec)
        return self._fitted[spec]

    def _build(self, spec: str) -> Retriever:
        parsed = parse_spec(spec)
        if parsed.kind == "bm25":
            bm25 = BM25Retriever(parsed.lexical, show_progress=self.options.show_progress, name=spec)
            bm25.fit(self.doc_ids, self.texts)
            return bm25
        if parsed.kind == "dense":
            model = load_model(self.model.with_name(parsed.model))
            dense = DenseRetriever(model, name=spec, options=self.options)
            if self.cache_dir is None:
                dense.fit(self.doc_ids, self.texts)
            else:
                dense.fit_embeddings(self.doc_ids, cached_corpus_embeddings(
                    parsed.model, model, self.doc_ids, self.texts, self.cache_dir, self.options))
            return dense
        if parsed.kind in M3_KINDS:
            if parsed.model not in self._m3:
                encoder = load_m3(self.model.with_name(parsed.model))
                self._m3[parsed.model] = (encoder, encoder.encode(self.texts, self.options, "passage"))
            encoder, corpus = self._m3[parsed.model]
            m3 = M3Retriever(encoder, spec, M3_KINDS[parsed.kind], parsed.weights, self.options)
            m3.fit_outputs(self.doc_ids, corpus)
            return m3
        if parsed.kind == "rerank":
            model = load_reranker(ModelSpec(parsed.model, precision=self.model.precision, device=self.model.device))
            reranker = RerankRetriever(self.get(parsed.children[0]), model, spec, self.rerank_depth, self.options)
            reranker.fit(self.doc_ids, self.texts)
            return reranker
        children = [self.get(child) for child in parsed.children]
        return HybridRetriever(children, fusion=parsed.fusion, weights=parsed.weights, name=spec, rrf_k=parsed.rrf_k)


M3_KINDS = {"m3-sparse": "sparse", "m3-colbert": "colbert", "m3": "m3"}  # spec kind -> M3Retriever mode
CHILD_PREFIXES = ("bm25", "dense:", "hybrid", "m3:", "m3@", "m3-sparse:", "m3-colbert:", "rerank:")


@dataclass(frozen=True)
class Spec:
    kind: str  # bm25 | dense | hybrid | m3 | m3-sparse | m3-colbert | rerank
    lexical: LexicalConfig | None = None
    model: str = ""
    children: tuple[str, ...] = ()
    fusion: str = "rrf"
    weights: tuple[float, ...] | None = None
    rrf_k: int = RRF_K


HYBRID_HEADS = {"hybrid": "rrf", "hybrid-rrf": "rrf", **{f"hybrid-{f}": f for f in FUSIONS}}
SPEC_HELP = ("bm25, bm25-char, bm25-phrase, bm25-fields:<field>=<w>,..., dense:<model>, hybrid:<a>+<b> (RRF), "
             "hybrid-<rrf|cc|z|dbsf>[@w1,w2,...][,k=K]:<a>+<b>, m3:<model>, m3-sparse:<model>, m3-colbert:<model> "
             "or rerank:<cross-encoder>@<spec>")


def parse_spec(spec: str) -> Spec:
    """Parse a retriever spec without loading anything, so a typo fails before any work starts."""
    spec = spec.strip()
    lexical = lexical_config(spec)
    if lexical is not None:
        return Spec("bm25", lexical=lexical)
    if spec.startswith("dense:"):
        model = spec[len("dense:"):].strip()
        if not model:
            raise SpecError("dense: needs a model, e.g. dense:minilm or dense:BAAI/bge-m3")
        return Spec("dense", model=model)
    if spec.startswith("hybrid"):
        head, sep, rest = spec.partition(":")
        children = _split_children(rest) if sep else []
        if len(children) < 2:
            raise SpecError(f"{spec!r}: a hybrid needs two or more retrievers, e.g. hybrid:bm25+dense:minilm")
        for child in children:
            parse_spec(child)
        fusion, weights, rrf_k = _parse_hybrid_head(head, spec, len(children))
        return Spec("hybrid", children=tuple(children), fusion=fusion, weights=weights, rrf_k=rrf_k)
    if spec.startswith(("m3:", "m3@", "m3-sparse:", "m3-colbert:")):
        return _parse_m3(spec)
    if spec.startswith("rerank:"):
        model, sep, first = spec[len("rerank:"):].partition("@")
        if not model.strip() or not sep or not first.strip():
            raise SpecError(f"{spec!r}: a rerank spec is rerank:<cross-encoder>@<first-stage spec>, e.g. "
                            "rerank:BAAI/bge-reranker-v2-m3@bm25")
        parse_spec(first)
        return Spec("rerank", model=model.strip(), children=(first.strip(),))
    raise SpecError(f"unknown retriever {spec!r}: use {SPEC_HELP}")


def _parse_m3(spec: str) -> Spec:
    head, _, model = spec.partition(":")
    kind, _, weight_text = head.partition("@")
    if not model.strip():
        raise SpecError(f"{spec!r}: {kind}: needs a bge-m3-layout model, e.g. {kind}:BAAI/bge-m3")
    if weight_text and kind != "m3":
        raise SpecError(f"{spec!r}: weights (@dense,sparse,colbert) only apply to m3:")
    weights = None
    if weight_text:
        try:
            weights = m3_weights([float(w) for w in weight_text.split(",")])
        except ValueError:
            raise SpecError(f"{spec!r}: weights are three non-negative numbers dense,sparse,colbert, e.g. "
                            "m3@0.4,0.2,0.4:BAAI/bge-m3") from None
    return Spec(kind, model=model.strip(), weights=weights)


def hybrid_spec(children: Sequence[str], fusion: str, weights: Sequence[float] | None = None,
                rrf_k: int = RRF_K) -> str:
    """The spec :func:`parse_spec` reads back as this fusion: ``hybrid-z@1,0.2:bm25-phrase+dense:static-ko``."""
    params = [f"{w:g}" for w in weights] if weights is not None else []
    if fusion == "rrf" and rrf_k != RRF_K:
        params.append(f"k={rrf_k}")
    return f"hybrid-{fusion}" + ("@" + ",".join(params) if params else "") + ":" + "+".join(children)


def parse_fusion(text: str, n: int = 2) -> dict[str, Any]:
    """A fusion of ``n`` retrievers named without them, as ``koembed index build --fusion`` takes it (``rrf``,
    ``rrf@k=20``, ``z@1,0.2``: the head of a hybrid spec): ``{"fusion", "weights", "rrf_k"}``."""
    fusion, weights, rrf_k = _parse_hybrid_head("hybrid-" + text.strip(), text, n)
    return {"fusion": fusion, "weights": list(weights) if weights is not None else None, "rrf_k": rrf_k}


def _parse_hybrid_head(head: str, spec: str, n: int) -> tuple[str, tuple[float, ...] | None, int]:
    """(fusion, weights, rrf_k) of ``hybrid-FUSION[@PARAMS]``. PARAMS: one weight per retriever, or a single
    weight w in [0, 1] for the first with the rest sharing 1 - w (the older ``hybrid-cc@0.3`` form), and for
    RRF ``k=K``."""
    name, _, params = head.partition("@")
    fusion = HYBRID_HEADS.get(name)
    if fusion is None:
        raise SpecError(f"{spec!r}: unknown fusion {name!r}; use " + ", ".join(HYBRID_HEADS))
    weights: list[float] = []
    rrf_k = RRF_K
    for item in (p.strip() for p in params.split(",") if p.strip()):
        key, eq, value = item.partition("=")
        if eq:
            if key.strip() != "k" or fusion != "rrf":
                raise SpecError(f"{spec!r}: {item!r}: only RRF takes a parameter, k=K")
            if not value.strip().isdigit() or int(value) < 1:
                raise SpecError(f"{spec!r}: RRF's k must be a positive integer, not {value!r}")
            rrf_k = int(value)
            continue
        try:
            weights.append(float(item))
        except ValueError:
            raise SpecError(f"{spec!r}: weight {item!r} is not a number") from None
    if not weights:
        return fusion, None, rrf_k
    if any(not (w >= 0 and w != float("inf")) for w in weights):
        raise SpecError(f"{spec!r}: weights must be non-negative numbers")
    if len(weights) == 1:
        if not weights[0] <= 1.0:
            raise SpecError(f"{spec!r}: a single weight is the first retriever's share, between 0 and 1")
        weights += [(1.0 - weights[0]) / (n - 1)] * (n - 1)
    if len(weights) != n:
        raise SpecError(f"{spec!r}: {len(weights)} weights for {n} retrievers; give one per retriever")
    if not any(w > 0 for w in weights):
        raise SpecError(f"{spec!r}: at least one weight must be positive")
    return fusion, tuple(weights), rrf_k


def _split_children(rest: str) -> list[str]:
    """Split ``bm25+dense:a/b`` at '+' signs that start a new spec (model paths may contain '+')."""
    parts: list[str] = []
    for piece in rest.split("+"):
        if parts and not piece.startswith(CHILD_PREFIXES):
            parts[-1] += "+" + piece
        else:
            parts.append(piece)
    return [p.strip() for p in parts if p.strip()]
