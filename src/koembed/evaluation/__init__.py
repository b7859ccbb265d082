"""Evaluation: run retrievers on a retrieval set and score them with both metric suites.

:mod:`~koembed.evaluation.runner` runs retrievers (``koembed bench``) and a model's IR suite (``koembed eval``);
:mod:`~koembed.evaluation.runs` writes run files and the results document; :mod:`~koembed.evaluation.plot` the
plot; :mod:`~koembed.evaluation.metrics` holds the two suites' definitions (sentence-transformers' IR, AutoRAG's);
:mod:`~koembed.evaluation.tuning` fits lexical-field and fusion weights on development sets;
:mod:`~koembed.evaluation.mteb_tasks` runs MTEB tasks (the optional ``mteb`` package).
"""

from koembed.evaluation.plot import plot_results
from koembed.evaluation.runner import RetrieverResult, evaluate_model, run_bench, score_run
from koembed.evaluation.runs import results_document, run_filename, write_runs

__all__ = ["RetrieverResult", "evaluate_model", "plot_results", "results_document", "run_bench", "run_filename",
           "score_run", "write_runs"]
