"""Metrics (RecBole's definitions) and the full-ranking evaluator."""

from genir.eval.evaluator import EvalBatch, FullRankingEvaluator, MetricSums, pad_histories
from genir.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, METRICS, parse_metric, topk_metrics
from genir.eval.report import aggregate, markdown_table

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "METRICS",
    "EvalBatch",
    "FullRankingEvaluator",
    "MetricSums",
    "aggregate",
    "markdown_table",
    "pad_histories",
    "parse_metric",
    "topk_metrics",
]
