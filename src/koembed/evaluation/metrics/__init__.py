"""Metrics take rankings (doc ids best first), never models; :mod:`.tables` renders them."""

from koembed.evaluation.metrics.autorag import (
           AUTORAG_METRICS,
           AUTORAG_TOP_K,
           autorag_metrics,
           query_autorag_metrics,
)
from koembed.evaluation.metrics.ir import (
           IR_DEPTH,
           ir_metrics,
           metric_names,
           query_ir_metrics,
)

__all__ = ["AUTORAG_METRICS", "AUTORAG_TOP_K", "IR_DEPTH", "autorag_metrics", "ir_metrics", "metric_names",
           "query_autorag_metrics", "query_ir_metrics"]
