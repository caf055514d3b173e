"""Full-ranking evaluation: every item of the catalogue is scored for every evaluated user, the items the user
has already interacted with before the stage are masked (RecBole's convention), and top-k metrics are averaged
over users. Batched and vectorized; runs on whatever device the scores come from.

A model is evaluated through a ``score_fn(batch: EvalBatch)`` that returns dense ``(B, num_items)`` scores or
ranked lists (:class:`genir.eval.retrieval.RankedLists`: ``(B, k)`` items best first, ``-1`` padding), as a
generative model's beam search gives them. Items a model did not produce (``-inf`` or absent) count as misses.
The whole history reaches the model (``max_history=None``): a beam search excludes every seen item inside the
search, and sequence models keep the last items they read themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from genir.data.split import Split
from genir.eval.metrics import DEFAULT_KS, DEFAULT_METRICS, topk_metrics


@dataclass
class EvalBatch:
    """What a model sees when asked to rank the catalogue for a batch of users.

    ``history`` is right-aligned (most recent item last), left-padded with ``pad_id`` (= num_items).
    """

    users: torch.Tensor  # (B,)
    history: torch.Tensor  # (B, T)
    history_len: torch.Tensor  # (B,)
    pad_id: int

    def to(self, device) -> EvalBatch:
        return EvalBatch(self.users.to(device), self.history.to(device), self.history_len.to(device), self.pad_id)


def pad_histories(seqs: list[np.ndarray], pad_id: int, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-align sequences (keep the last ``max_len`` items), left-pad with ``pad_id``."""
    if max_len is not None:
        seqs = [s[-max_len:] for s in seqs]
    lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    width = max(1, int(lens.max()) if len(seqs) else 1)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for r, s in enumerate(seqs):
        if len(s):
            out[r, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
    return out, lens


@dataclass
class MetricSums:
    """Un-averaged metric sums over a set of users, so shards from several processes can be added up."""

    sums: dict[str, float]
    count: int

    def __add__(self, other: MetricSums) -> MetricSums:
        return MetricSums({k: self.sums[k] + other.sums[k] for k in self.sums}, self.count + other.count)

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}


class FullRankingEvaluator:
    """Ranks the whole catalogue for each user of ``stage`` ("valid" or "test") of a :class:`Split`."""

    def __init__(
        self,
        split: Split,
        stage: str = "test",
        ks=DEFAULT_KS,
        metrics=DEFAULT_METRICS,
        batch_size: int = 256,
        max_history: int | None = None,
    ):
        self.split = split
        self.stage = stage
        self.ks = tuple(ks)
        self.metrics = tuple(metrics)
        self.batch_size = batch_size
        self.max_history = max_history
        self.users = split.eval_users(stage)
        self.seen = split.seen_matrix(stage)
        self.targets = split.target_matrix(stage)
        self.histories = split.histories(stage)
        self.pad_id = split.num_items

    def batches(self, users: np.ndarray | None = None):
        users = self.users if users is None else np.asarray(users)
        for start in range(0, len(users), self.batch_size):
            u = users[start:start + self.batch_size]
            hist, lens = pad_histories([self.histories[x] for x in u], self.pad_id, self.max_history)
            yield EvalBatch(torch.as_tensor(u, dtype=torch.long), hist, lens, self.pad_id)

    def _mask(self, rows: np.ndarray, device) -> torch.Tensor:
        m = self.seen[rows]
        dense = torch.zeros(len(rows), self.split.num_items, dtype=torch.bool)
        r = np.repeat(np.arange(len(rows)), np.diff(m.indptr))
        dense[torch.as_tensor(r), torch.as_tensor(m.indices, dtype=torch.long)] = True
        return dense.to(device)

    def masked_scores(self, score_fn: Callable[[EvalBatch], torch.Tensor], batch: EvalBatch) -> torch.Tensor:
        return self._masked(score_fn(batch), batch)

    def _masked(self, scores: torch.Tensor, batch: EvalBatch) -> torch.Tensor:
        scores = scores.float()
        if scores.shape != (len(batch.users), self.split.num_items):
            raise ValueError(
                f"score_fn returned shape {tuple(scores.shape)}, expected ({len(batch.users)}, {self.split.num_items})"
            )
        return scores.masked_fill(self._mask(batch.users.numpy(), scores.device), float("-inf"))

    @property
    def metric_names(self) -> list[str]:
        return [f"{m}@{k}" for k in self.ks for m in self.metrics]

    def _ranked_hits(self, answer, batch: EvalBatch, kmax: int) -> torch.Tensor:
        """(B, kmax) hits of ranked lists, the user's seen items dropped from them first (ranks close up)."""
        items = answer.items[:, :].cpu().numpy()
        rows = batch.users.numpy()
        seen, targets = self.seen[rows], self.targets[rows]
        hits = np.zeros((len(rows), kmax), dtype=bool)
        for b in range(len(rows)):
            row = items[b]
            keep = row[(row >= 0) & ~np.isin(row, seen.indices[seen.indptr[b]:seen.indptr[b + 1]])][:kmax]
            hits[b, :len(keep)] = np.isin(keep, targets.indices[targets.indptr[b]:targets.indptr[b + 1]])
        return torch.from_numpy(hits)

    @torch.no_grad()
    def evaluate_sums(self, score_fn, users: np.ndarray | None = None) -> MetricSums:
        """Metric sums over ``users`` (default: every user of the stage). Use for sharded evaluation."""
        kmax = min(max(self.ks), self.split.num_items)
        sums: dict[str, float] = {f"{m}@{k}": 0.0 for k in self.ks for m in self.metrics}
        count = 0
        for batch in self.batches(users):
            t = self.targets[batch.users.numpy()]
            num_pos = torch.as_tensor(np.diff(t.indptr), dtype=torch.float64)
            answer = score_fn(batch)
            if not isinstance(answer, torch.Tensor):  # ranked lists (RankedLists)
                hits = self._ranked_hits(answer, batch, kmax)
            else:
                scores = self._masked(answer, batch)
                top = torch.topk(scores, kmax, dim=1).indices.cpu()  # (B, K)
                tdense = torch.zeros(len(batch.users), self.split.num_items, dtype=torch.bool)
                r = np.repeat(np.arange(len(batch.users)), np.diff(t.indptr))
                tdense[torch.as_tensor(r), torch.as_tensor(t.indices, dtype=torch.long)] = True
                hits = tdense.gather(1, top)
                # a -inf item in the top-k (fewer than k candidates) can never be a hit
                hits &= torch.isfinite(scores.gather(1, top.to(scores.device))).cpu()
            vals = topk_metrics(hits, num_pos, self.ks, self.metrics)
            for name, v in vals.items():
                sums[name] += float(v.sum())
            count += len(batch.users)
        return MetricSums(sums, count)

    def evaluate(self, score_fn, users: np.ndarray | None = None) -> dict[str, float]:
        """Mean of each metric over the evaluated users."""
        return self.evaluate_sums(score_fn, users).means()

    def model_sums(self, model, device, shard: tuple[int, int] = (0, 1)) -> MetricSums:
        """Sums for this process's share of the users (``shard`` = (process index, process count)), scored by
        ``model.full_scores`` after ``model.prepare_eval()``: what the Trainer calls."""
        index, count = shard
        model.prepare_eval()
        return self.evaluate_sums(lambda b: model.full_scores(b.to(device)), self.users[index::count])

    @torch.no_grad()
    def recommend(self, score_fn, users: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids and scores per user, history masked: ``(items (U, k), scores (U, k))``."""
        items, scores = [], []
        for batch in self.batches(np.asarray(users)):
            s = self.masked_scores(score_fn, batch)
            top = torch.topk(s, min(k, self.split.num_items), dim=1)
            items.append(top.indices.cpu().numpy())
            scores.append(top.values.cpu().numpy())
        return np.concatenate(items), np.concatenate(scores)
