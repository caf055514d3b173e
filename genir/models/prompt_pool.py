"""The L2P-style prompt pool: ``pool`` prompts with keys, the ``top_k`` nearest keys (cosine) to a query feature
pick the prompts prefixed to a frozen model's input or layers. Shared by PromptDSI (:mod:`genir.methods.dsi.prompts`,
fixed topic keys) and Double Mixture's L2P baseline (:mod:`genir.methods.doublemix`, learned keys).

Learned keys (L2P) are parameters pulled toward the features of the queries that select them (``1 - cos``, L2P's
surrogate loss); keys that win early get pulled closer and win again, so few prompts are used (the collapse
PromptDSI's fixed keys avoid). :attr:`PromptPool.train_usage` and ``eval_usage`` count selections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PromptPool(nn.Module):
    """``pool`` prompts of ``length`` vectors for each of ``layers`` layers, with keys to select them.

    Args:
        keys: (pool, H) initial keys (topic centroids for PromptDSI, random for L2P).
        learn_keys: train the keys with L2P's pull loss (False: fixed keys).
        init: (M, H) hidden states the prompt vectors are drawn from (so they start at the scale of real tokens).
        center: (H,) subtracted from every query feature before the cosine (None: raw features). Mean-pooled
            features of a frozen encoder share a large common direction, and short queries sit closer to it
            than the documents the topic keys were fitted on, so raw cosines send most queries to the few keys
            nearest that direction; centring on the D0 documents' mean feature removes it (keys fitted on
            centred features too, see :func:`topic_keys`). Not in the paper; off by default.
    """

    def __init__(self, keys: torch.Tensor, layers: int, length: int, top_k: int, *, learn_keys: bool,
                 init: torch.Tensor, seed: int = 0, center: torch.Tensor | None = None):
        super().__init__()
        pool, hidden = keys.shape
        self.register_buffer("center", torch.zeros(hidden) if center is None else center.float().clone())
        self.top_k = min(int(top_k), pool)
        self.learn_keys = learn_keys
        self.keys = nn.Parameter(keys.float().clone(), requires_grad=learn_keys)
        g = torch.Generator().manual_seed(seed)
        pick = torch.randint(0, init.shape[0], (pool * layers * length,), generator=g)
        self.prompts = nn.Parameter(init.float()[pick].reshape(pool, layers, length, hidden).clone())
        # selections while training and while answering queries, for the usage histograms
        self.register_buffer("train_usage", torch.zeros(pool, dtype=torch.long), persistent=False)
        self.register_buffer("eval_usage", torch.zeros(pool, dtype=torch.long), persistent=False)

    def select(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k pool entries per query (B, top_k) and the mean cosine of the chosen keys (B,)."""
        cos = F.normalize(features.float() - self.center, dim=-1) @ F.normalize(self.keys, dim=-1).T
        top = cos.topk(self.top_k, dim=1)
        usage = self.train_usage if self.training else self.eval_usage
        usage += torch.bincount(top.indices.flatten(), minlength=self.keys.shape[0])
        return top.indices, top.values.mean(1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, layers, top_k * length, H) prompts for each query and the pull loss (0 for fixed keys)."""
        idx, cos = self.select(features)
        chosen = self.prompts[idx]  # (B, k, layers, length, H)
        b, k, layers, length, hidden = chosen.shape
        prompts = chosen.permute(0, 2, 1, 3, 4).reshape(b, layers, k * length, hidden)
        pull = (1.0 - cos).mean() if self.learn_keys else cos.new_zeros(())
        return prompts, pull

    @staticmethod
    def entropy(usage: torch.Tensor) -> float:
        """Entropy (nats) of a selection histogram; log(pool) when every prompt is used equally."""
        p = usage.double() / usage.sum().clamp_min(1)
        p = p[p > 0]
        return float(-(p * p.log()).sum())
