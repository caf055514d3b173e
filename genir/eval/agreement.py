"""How closely an approximate ranking (beam search) follows an exact one (teacher-forced scores of every item).

Both are computed on the same users with the history masked, as the evaluator ranks them. Reported: the share
of users whose top-k lists are identical (same items, same order), whose top-k sets are identical, the mean
overlap of the top-k sets, and the full-ranking metrics of each ranking with their difference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genir.data.split import Split
from genir.eval.evaluator import EvalBatch, FullRankingEvaluator

ScoreFn = Callable[[EvalBatch], torch.Tensor]


@torch.no_grad()
def ranking_agreement(split: Split, approx: ScoreFn, exact: ScoreFn, stage: str = "test", k: int = 10,
                      batch_size: int = 256) -> dict:
    """Agreement of ``approx``'s top-``k`` with ``exact``'s top-``k`` over every user of ``stage``.

    Items an approximate scorer leaves at ``-inf`` (outside the beam) cannot be in its top-k: a user whose
    beam kept fewer than ``k`` unseen items has a shorter list, which never equals the exact one; their share is
    reported as ``short_lists``."""
    ev = FullRankingEvaluator(split, stage, batch_size=batch_size)
    same_order = same_set = short = 0
    overlap = []
    stored: dict[str, dict[int, torch.Tensor]] = {"approx": {}, "exact": {}}
    for batch in ev.batches():
        raw = {"approx": approx(batch).float().cpu(), "exact": exact(batch).float().cpu()}  # each scored once
        for name, scores in raw.items():
            stored[name].update(zip(batch.users.tolist(), scores))
        a = ev.masked_scores(lambda _b, r=raw["approx"]: r, batch)
        e = ev.masked_scores(lambda _b, r=raw["exact"]: r, batch)
        a_top = a.topk(k, dim=1)
        e_top = e.topk(k, dim=1).indices.numpy()
        a_items = a_top.indices.numpy()
        a_valid = torch.isfinite(a_top.values).numpy()
        for row in range(len(batch.users)):
            mine = a_items[row][a_valid[row]]
            short += int(len(mine) < k)
            same_order += int(len(mine) == k and np.array_equal(mine, e_top[row]))
            same_set += int(len(mine) == k and set(mine) == set(e_top[row]))
            overlap.append(len(set(mine) & set(e_top[row])) / k)
    n = len(overlap)
    m_approx, m_exact = (ev.evaluate(lambda b, s=stored[name]: torch.stack([s[u] for u in b.users.tolist()]))
                         for name in ("approx", "exact"))
    return {
        "users": n, "k": k, "stage": stage,
        "same_top_k_list": same_order / n, "same_top_k_set": same_set / n, "mean_overlap": float(np.mean(overlap)),
        "short_lists": short / n,
        "metrics_approx": m_approx, "metrics_exact": m_exact,
        "metric_difference": {key: m_approx[key] - m_exact[key] for key in m_exact},
    }
