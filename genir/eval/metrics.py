"""Top-k ranking metrics with RecBole 1.2.1's definitions, vectorized over a batch of users.

Given ``hits`` (B, K): ``hits[u, r]`` is 1 when the item ranked r-th (0-based) for user u is a target, and
``num_pos`` (B,): how many targets the user has, for every cut-off k <= K:

* ``hit@k``       = 1 if any target is in the top k
* ``recall@k``    = (# targets in top k) / num_pos
* ``precision@k`` = (# targets in top k) / k
* ``mrr@k``       = 1 / (rank of the first target) if it is in the top k, else 0
* ``ndcg@k``      = DCG@k / IDCG@k with binary gains 1/log2(rank+1); IDCG uses min(num_pos, k) ideal hits

These match ``recbole.evaluator.metrics`` (Hit, Recall, Precision, MRR, NDCG); ``tests/eval`` checks both on
hand-computed cases and ``benchmarks/vs_recbole.py --check-metrics`` against RecBole itself.
"""

from __future__ import annotations

import torch

METRICS = ("recall", "ndcg", "mrr", "hit", "precision")
DEFAULT_METRICS = ("recall", "ndcg", "mrr", "hit")
DEFAULT_KS = (5, 10, 20)


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``."""
    base, _, k = name.lower().partition("@")
    if base not in METRICS or not k.isdigit():
        raise ValueError(f"metric must look like one of {METRICS} followed by @k, got {name!r}")
    return base, int(k)


def topk_metrics(
    hits: torch.Tensor, num_pos: torch.Tensor, ks=DEFAULT_KS, metrics=DEFAULT_METRICS
) -> dict[str, torch.Tensor]:
    """Per-user metric values: ``{"ndcg@10": (B,) tensor, ...}``.

    ``hits`` must have at least ``max(ks)`` columns (pad with zeros when the catalogue is smaller).
    """
    hits = hits.to(torch.float64)
    num_pos = num_pos.to(torch.float64)
    kmax = max(ks)
    if hits.shape[1] < kmax:
        hits = torch.nn.functional.pad(hits, (0, kmax - hits.shape[1]))
    ranks = torch.arange(1, kmax + 1, dtype=torch.float64, device=hits.device)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits[:, :kmax].cumsum(1)
    dcg = (hits[:, :kmax] * discounts).cumsum(1)
    ideal = discounts.cumsum(0)
    first = torch.where(hits[:, :kmax].any(1), hits[:, :kmax].argmax(1), torch.full_like(num_pos, kmax, dtype=torch.long))
    out = {}
    for k in ks:
        for m in metrics:
            if m == "hit":
                v = (cum_hits[:, k - 1] > 0).to(torch.float64)
            elif m == "recall":
                v = cum_hits[:, k - 1] / num_pos
            elif m == "precision":
                v = cum_hits[:, k - 1] / k
            elif m == "mrr":
                v = torch.where(first < k, 1.0 / (first.to(torch.float64) + 1.0), torch.zeros_like(num_pos))
            elif m == "ndcg":
                n_ideal = torch.clamp(num_pos, max=k).to(torch.long)
                v = dcg[:, k - 1] / ideal[n_ideal - 1]
            else:
                raise ValueError(f"unknown metric {m!r}; known: {METRICS}")
            out[f"{m}@{k}"] = v
    return out
