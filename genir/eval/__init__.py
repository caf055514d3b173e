"""Metrics (RecBole's definitions) and the evaluators: full ranking for recommendation splits, ranked lists
against qrels for query retrieval; both take dense scores or ranked lists."""

from __future__ import annotations

from genir.data.split import Split
from genir.data.tasks import QueryRetrievalTask
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch, FullRankingEvaluator, MetricSums, pad_histories
from genir.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, METRICS, parse_metric, topk_metrics
from genir.eval.report import aggregate, markdown_table, metrics_table, print_metrics
from genir.eval.retrieval import RETRIEVAL_KS, RETRIEVAL_METRICS, RankedLists, RetrievalEvaluator


def evaluator_for(task, stage: str, *, batch_size: int = 256, metric: str | None = None, **kwargs):
    """The evaluator of ``stage`` of a task: :class:`FullRankingEvaluator` for a recommendation
    :class:`~genir.data.Split`, :class:`RetrievalEvaluator` for a :class:`~genir.data.tasks.QueryRetrievalTask`.
    ``metric`` (``ndcg@10``) adds its cut-off to the default ones."""
    k = int(metric.partition("@")[2]) if metric and metric.partition("@")[2].isdigit() else None
    if isinstance(task, Split):
        ks = sorted(set(kwargs.pop("ks", DEFAULT_KS)) | ({k} if k else set()))
        return FullRankingEvaluator(task, stage, ks=ks, batch_size=batch_size, **kwargs)
    if isinstance(task, QueryRetrievalTask):
        ks = sorted(set(kwargs.pop("ks", RETRIEVAL_KS)) | ({k} if k else set()))
        return RetrievalEvaluator(task, stage, ks=ks, batch_size=batch_size, **kwargs)
    raise ConfigError(f"no evaluator for a {type(task).__name__}; pass one to the Trainer (an object with "
                      "model_sums(model, device, shard))")


__all__ = [
    "DEFAULT_KS",
    "DEFAULT_METRICS",
    "METRICS",
    "RETRIEVAL_KS",
    "RETRIEVAL_METRICS",
    "EvalBatch",
    "FullRankingEvaluator",
    "MetricSums",
    "RankedLists",
    "RetrievalEvaluator",
    "aggregate",
    "evaluator_for",
    "markdown_table",
    "metrics_table",
    "pad_histories",
    "parse_metric",
    "print_metrics",
    "topk_metrics",
]
