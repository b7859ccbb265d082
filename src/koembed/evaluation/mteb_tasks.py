"""Run an MTEB retrieval task (Ko-StrategyQA, AutoRAGRetrieval, MIRACLRetrieval's Korean subset...) on a koembed
model with the ``mteb`` package (the optional ``mteb`` extra), so a fine-tuned model gets the leaderboard's numbers.

The model is loaded as every koembed command loads it (:class:`~koembed.models.ModelSpec`: precision, backend,
prompts) and encoded by :func:`koembed.models.encode` with the query or passage prompt; mteb does the rest
(its data loading, exact search and scores), so the numbers are mteb's own. mteb reads a task's data from the
Hugging Face hub at the revision it pins: ``data_dir`` replaces that with a local copy of the dataset repository
(``hf download REPO --repo-type dataset --revision REV --local-dir DIR`` where the hub is reachable). Offline
without ``data_dir`` only the datasets cache can serve it; when neither can, :class:`~koembed.errors.MtebError`
says what to download.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import MtebError
from koembed.models import EncodeOptions, Encoder, ModelSpec, encode, load_model
from koembed.models.locate import hub_reachable
from koembed.models.prompts import Role, role_options

if TYPE_CHECKING:
    import numpy as np

KOREAN = "kor"
# Retrieval tasks with Korean data in mteb 2.26 (``mteb.get_tasks(languages=["kor"], task_types=["Retrieval"])``)
KOREAN_TASKS = ("Ko-StrategyQA", "AutoRAGRetrieval", "MIRACLRetrieval", "SQuADKorV1Retrieval", "LawIRKo",
                "MrTidyRetrieval", "XPQARetrieval", "PublicHealthQA", "MultiLongDocRetrieval")


def load_task(name: str, data_dir: str | Path | None = None, show_progress: bool = True) -> Any:
    """The mteb retrieval task ``name`` (multilingual tasks keep their Korean subsets), its data loaded from
    ``data_dir`` (a local copy of its dataset repository) or, without it, from the hub or the datasets cache."""
    try:
        import mteb
        from mteb.abstasks.retrieval import AbsTaskRetrieval
    except ImportError:
        raise MtebError("MTEB tasks need the mteb package: pip install 'koembed[mteb]'") from None
    try:
        task = mteb.get_task(name, languages=[KOREAN])
    except (KeyError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc
        raise MtebError(f"--mteb {name!r}: not an mteb task ({reason}); Korean retrieval tasks include "
                        f"{', '.join(KOREAN_TASKS)}") from None
    if not isinstance(task, AbsTaskRetrieval):
        raise MtebError(f"--mteb {name!r} is a {task.metadata.type} task: koembed eval --mteb runs retrieval tasks")
    source = task.metadata.dataset
    where = f"{source['path']} at revision {source.get('revision')}"
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise MtebError(f"--mteb-data {folder}: no such folder (a local copy of {where})")
        # a copy on this task: the metadata object is shared by every instance of the task class
        task.metadata = task.metadata.model_copy(update={"dataset": {**source, "path": str(folder.resolve())}})
        where = str(folder)
    online = data_dir is None and hub_reachable()
    import datasets

    bars = datasets.is_progress_bar_enabled()
    if not show_progress:
        datasets.disable_progress_bars()
    try:
        with _offline(not online):
            task.load_data()
    except Exception as exc:  # datasets and the hub raise many kinds; all mean the same to the user
        if data_dir is not None:
            raise MtebError(f"--mteb-data {where}: mteb could not read {name}'s data from it ({type(exc).__name__}: "
                            f"{exc}); it must be a copy of the dataset repository {source['path']} (configs "
                            "corpus, queries and default or qrels)") from None
        remedy = (f"where the hub is reachable run `hf download {source['path']} --repo-type dataset --revision "
                  f"{source.get('revision')} --local-dir DIR`, then pass --mteb-data DIR")
        if not online:
            raise MtebError(f"--mteb {name}: the Hugging Face hub cannot be reached and {where} is not in the local "
                            f"datasets cache: {remedy}") from None
        raise MtebError(f"--mteb {name}: loading {where} failed ({type(exc).__name__}: {exc}); {remedy}") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    return task


@contextlib.contextmanager
def _offline(offline: bool) -> Iterator[None]:
    """datasets and huggingface_hub read only their caches inside (no retries against an unreachable hub)."""
    if not offline:
        yield
        return
    from huggingface_hub import constants as hub_constants

    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {n: os.environ.get(n) for n in names}
    saved_flag = hub_constants.HF_HUB_OFFLINE
    os.environ.update({n: "1" for n in names})
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        for n, value in saved.items():
            if value is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = value


def mteb_encoder(model: Encoder, spec: ModelSpec, options: EncodeOptions) -> Any:
    """``model`` behind mteb's encoder interface: texts encoded by :func:`koembed.models.encode` with the query or
    passage prompt (:func:`koembed.models.prompts.role_options`), scored with the model's similarity."""
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.types import PromptType

    class KoembedEncoder(AbsEncoder):
        def __init__(self) -> None:
            self.model = model
            name = spec.name if "/" in spec.name else f"koembed/{spec.name}"
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": name, "embed_dim": model.get_embedding_dimension(), "framework": ["Sentence Transformers"],
                # sentence-transformers and mteb name similarities alike (cosine, dot, euclidean, manhattan)
                "similarity_fn_name": ScoringFunction(getattr(model, "similarity_fn_name", None) or "cosine"),
                "max_tokens": getattr(model, "max_seq_length", None)})

        def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
                   prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
            texts = [text for batch in inputs for text in batch["text"]]
            role: Role = "query" if prompt_type == PromptType.query else "passage"
            return encode(model, texts, role_options(options, model, role))

    return KoembedEncoder()


def run_mteb(task_name: str, spec: ModelSpec, options: EncodeOptions = EncodeOptions(),
             data_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one mteb retrieval task on ``spec``'s model; mteb's result document (its ``TaskResult`` as JSON, the
    format of mteb's results files: scores per split and subset, ``main_score`` and ``ndcg_at_10`` among them,
    rounded by mteb to 5 decimals). mteb's own results cache is not used: the caller writes the document where it
    wants it."""
    task = load_task(task_name, data_dir, options.show_progress)
    import mteb

    model = load_model(spec)
    result = mteb.evaluate(mteb_encoder(model, spec, options), task, cache=None, overwrite_strategy="always",
                           show_progress_bar=options.show_progress, encode_kwargs={"batch_size": options.batch_size})
    return result.task_results[0].model_dump(mode="json")


def main_scores(document: dict[str, Any]) -> list[tuple[str, str, float, float]]:
    """``(split, subset, main score, ndcg@10)`` rows of an mteb result document, for a table."""
    return [(split, row.get("hf_subset", "default"), float(row["main_score"]), float(row["ndcg_at_10"]))
            for split, rows in document["scores"].items() for row in rows]
