"""Which samples to keep under a budget: DEALRec's coverage-enhanced sampling, CCS, and plain random.

:func:`coverage_sample` is the stratified sampler DEALRec takes from CCS (Zheng et al., ICLR 2023): drop the
``hard_prune`` share of highest-scoring samples, cut the remaining score range into ``strata`` equal-width bins, then
visit the bins from the smallest up, taking ``min(bin size, remaining budget / bins left)`` samples uniformly from
each, so that every score region stays represented and the budget left by small bins flows to big ones. DEALRec runs
it on its mixed score; CCS runs the same procedure on a difficulty score (EL2N or AUM); with ``hard_prune=0`` and one
stratum it is uniform random sampling.
"""

from __future__ import annotations

import numpy as np


def coverage_sample(scores: np.ndarray, budget: int, *, strata: int = 50, hard_prune: float = 0.1,
                    seed: int = 0) -> np.ndarray:
    """Indices (sorted) of ``budget`` samples chosen by stratified sampling over ``scores``; fewer only when fewer
    than ``budget`` samples survive the hard prune."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("coverage_sample: scores contain NaN or infinity")
    if not 0.0 <= hard_prune < 1.0:
        raise ValueError(f"coverage_sample: hard_prune must be in [0, 1), got {hard_prune}")
    if budget < 0 or strata < 1:
        raise ValueError(f"coverage_sample: budget must be >= 0 and strata >= 1, got {budget} and {strata}")
    rng = np.random.default_rng(seed)
    order = np.argsort(-scores, kind="stable")
    kept = order[round(hard_prune * len(scores)):]  # the highest-scoring share goes first
    if budget >= len(kept):
        return np.sort(kept)
    values = scores[kept]
    lo, hi = values.min(), values.max()
    edges = np.linspace(lo, hi, strata + 1)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, strata - 1)
    groups = [kept[bins == b] for b in range(strata)]
    groups = sorted((g for g in groups if len(g)), key=len)
    chosen, left = [], int(budget)
    for i, group in enumerate(groups):
        take = min(len(group), left // (len(groups) - i))
        chosen.append(rng.choice(group, size=take, replace=False))
        left -= take
    out = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    return np.sort(out)


def random_sample(n: int, budget: int, seed: int = 0) -> np.ndarray:
    """``budget`` of ``n`` indices uniformly at random (sorted)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(budget, n), replace=False))


def top_sample(scores: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` highest-scoring indices (sorted): pruning by a score alone, without coverage."""
    return np.sort(np.argsort(-np.asarray(scores), kind="stable")[:budget])
