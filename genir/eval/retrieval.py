"""Query retrieval evaluation (DSI, text-to-image): each held-out query's ranked list against its qrels.

A model answers a :class:`~genir.data.tasks.QueryBatch` with :class:`RankedLists` (``(B, k)`` item ids best
first, ``-1`` where it found fewer than ``k``, and their scores) or with dense ``(B, N)`` scores over the whole
catalogue; both go through the same hit computation as the recommendation evaluator
(:func:`genir.eval.metrics.topk_metrics`). Reported: ``hits@k`` (a relevant item in the top k; "Hits@k" or
"Recall@k" in the DSI papers, which have one relevant document per query), ``recall@k`` (share of the relevant
items found), ``mrr@10`` and ``ndcg@10``. With corpus steps, a query of step ``s`` is ranked among the items
that exist at ``s`` (``QueryBatch.allowed``) and the evaluator can report each step's queries apart
(old-corpus and new-corpus recall, forgetting).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genir.data.tasks import QueryBatch, QueryRetrievalTask
from genir.eval.evaluator import MetricSums
from genir.eval.metrics import topk_metrics

RETRIEVAL_KS = (1, 10, 100)
RETRIEVAL_METRICS = ("hits", "recall", "mrr", "ndcg")


@dataclass
class RankedLists:
    """A model's top-k answer: ``items`` (B, k) long, best first, ``-1`` for no item; ``scores`` (B, k)."""

    items: torch.Tensor
    scores: torch.Tensor

    @classmethod
    def from_scores(cls, scores: torch.Tensor, k: int, allowed: np.ndarray | None = None) -> RankedLists:
        """Top-k of dense (B, N) scores; items outside ``allowed`` (N,) and ``-inf`` scores never appear."""
        scores = scores.float()
        if allowed is not None:
            mask = torch.as_tensor(~allowed, device=scores.device)
            scores = scores.masked_fill(mask[None, :], float("-inf"))
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        items = torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, -1))
        return cls(items, top.values)

    def keep(self, allowed: np.ndarray | None, k: int | None = None) -> RankedLists:
        """Only the items of ``allowed`` (N,) bool (a corpus step's items), order kept, the rest padded with
        ``-1`` / ``-inf`` at the end; then the first ``k`` columns."""
        items, scores = self.items, self.scores
        if allowed is not None:
            keep = torch.as_tensor(allowed)[items.clamp_min(0)] & (items >= 0)
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
            items = torch.where(keep, items, -1).gather(1, order)
            scores = torch.where(keep, scores, float("-inf")).gather(1, order)
        return RankedLists(items[:, :k], scores[:, :k])


def ranked_hits(items: torch.Tensor, relevant: list[np.ndarray]) -> torch.Tensor:
    """(B, k) bool: ``items[b, r]`` is one of query b's relevant items (``-1`` is never a hit)."""
    items = items.cpu().numpy()
    hits = np.zeros(items.shape, dtype=bool)
    for b, rel in enumerate(relevant):
        hits[b] = np.isin(items[b], rel) & (items[b] >= 0)
    return torch.from_numpy(hits)


class RetrievalEvaluator:
    """Evaluates the queries of ``stage`` of a :class:`QueryRetrievalTask` (optionally of one corpus step)."""

    def __init__(self, task: QueryRetrievalTask, stage: str = "test", ks=RETRIEVAL_KS, metrics=RETRIEVAL_METRICS,
                 batch_size: int = 256, step: int | None = None, corpus_step: int | None = None):
        """``step``: only the queries of that step; ``corpus_step``: rank among the items that exist after that
        step (default: the last step, i.e. the whole catalogue; a step's own queries are ranked among the items
        that exist then when ``corpus_step=step``)."""
        self.task = task
        self.stage = stage
        self.ks = tuple(ks)
        self.metrics = tuple(metrics)
        self.batch_size = batch_size
        self.queries = task.stage_queries(stage, step)
        last = len(task.steps) - 1 if corpus_step is None else corpus_step
        self.allowed = None if last == len(task.steps) - 1 else task.items_at(last)

    @property
    def metric_names(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in self.metrics]

    def __len__(self) -> int:
        return len(self.queries)

    def batches(self, rows: np.ndarray | None = None):
        rows = np.arange(len(self.queries)) if rows is None else np.asarray(rows)
        for start in range(0, len(rows), self.batch_size):
            part = self.queries.iloc[rows[start:start + self.batch_size]]
            yield QueryBatch(part["qid"].tolist(), part["text"].tolist(), self.allowed)

    @torch.no_grad()
    def evaluate_sums(self, rank_fn: Callable[[QueryBatch], RankedLists | torch.Tensor],
                      rows: np.ndarray | None = None) -> MetricSums:
        """Metric sums over the queries ``rows`` (default: all). ``rank_fn`` returns ranked lists or dense
        (B, N) scores."""
        kmax = max(self.ks)
        sums = dict.fromkeys(self.metric_names, 0.0)
        count = 0
        for batch in self.batches(rows):
            answer = rank_fn(batch)
            if isinstance(answer, torch.Tensor):
                answer = RankedLists.from_scores(answer, kmax, self.allowed)
            if answer.items.shape[0] != len(batch.qids):
                raise ValueError(f"rank_fn answered {answer.items.shape[0]} rows for {len(batch.qids)} queries")
            relevant = [self.task.relevant(q) for q in batch.qids]
            if self.allowed is not None:
                relevant = [r[self.allowed[r]] for r in relevant]
            hits = ranked_hits(answer.items[:, :kmax], relevant)
            num_pos = torch.tensor([max(1, len(r)) for r in relevant], dtype=torch.float64)
            vals = topk_metrics(hits, num_pos, self.ks, ["hit" if m == "hits" else m for m in self.metrics])
            for name, v in vals.items():
                base, k = name.split("@")
                key = f"{'hits' if base == 'hit' else base}@{k}"
                sums[key] += float(v.sum())
            count += len(batch.qids)
        return MetricSums(sums, count)

    def evaluate(self, rank_fn, rows: np.ndarray | None = None) -> dict[str, float]:
        return self.evaluate_sums(rank_fn, rows).means()

    def model_sums(self, model, device, shard: tuple[int, int] = (0, 1)) -> MetricSums:
        """Sums for this process's share of the queries, ranked by ``model.retrieve(batch, k)``."""
        index, count = shard
        rows = np.arange(len(self.queries))[index::count]
        kmax = max(self.ks)
        return self.evaluate_sums(lambda b: model.retrieve(b, k=kmax), rows)
