"""The retriever spec grammar: Specs name retrievers on the command line:
- ``bm25``: :class:`koembed.lexical.BM25Retriever` over content morphemes; ``bm25-char`` over character
  bigrams; ``bm25-phrase`` over weighted fields (morphemes, morpheme bigrams, character bigrams);
  ``bm25-fields:unigram=1,char=0.5@z`` any weights and normalisation (:mod:`koembed.lexical.bm25`); each with an
  optional analyzer, ``bm25-phrase@kiwi`` (MeCab-ko when none is named: :mod:`koembed.lexical.analyzer`);
- ``dense:<model>``: a hub id, local folder, or ``minilm`` (the bundled all-MiniLM-L6-v2);
- ``hybrid:<a>+<b>`` (or ``hybrid-rrf:``): reciprocal-rank fusion of two or more specs; ``hybrid-rrf@k=20:`` sets
  RRF's k, ``hybrid-rrf@1,0.5:`` weighs the retrievers;
- ``hybrid-cc:``, ``hybrid-z:``, ``hybrid-dbsf:``: weighted sums of min-max, z-score or 3-sigma (DBSF) normalised
  scores; ``@w1,w2,...`` one weight per retriever (``koembed tune-fusion`` fits them), or ``@0.3`` for 0.3 on the
  first and the rest sharing 0.7.
- ``m3-sparse:<model>``, ``m3-colbert:<model>``, ``m3:<model>`` / ``m3@0.4,0.2,0.4:<model>``: BGE-M3's lexical
  weights, ColBERT vectors, and FlagEmbedding's weighted sum of all three (:mod:`koembed.retrieval.m3`);
- ``rerank:<cross-encoder>@<first-stage spec>``: the first stage's top ``rerank_depth`` hits rescored by a
  cross-encoder (:mod:`koembed.retrieval.rerank`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from koembed.errors import SpecError
from koembed.lexical import LexicalConfig, lexical_config
from koembed.models.m3 import m3_weights
from koembed.ranking import FUSIONS, RRF_K

if TYPE_CHECKING:
    pass


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


SPEC_HELP = ("bm25, bm25-char, bm25-phrase, bm25-fields:<field>=<w>,...[@z] (each [@mecab|@kiwi]), dense:<model>, hybrid:<a>+<b> (RRF), "
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
