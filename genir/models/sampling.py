"""Negative sampling and the BPR loss, shared by every pairwise-trained recommender (BPR, LightGCN, MetaMMF,
MIG-GT, AD-DRL, MMGRec's graph encoder)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split


class NegativeSampler(nn.Module):
    """Uniform negatives that are not training positives of the user, drawn on the model's device.

    Positives are kept as a sorted tensor of keys ``user * num_items + item``; a draw that hits a positive is
    redrawn (up to ``tries`` times; on dense data a few may remain, which is harmless).
    """

    def __init__(self, split: Split, tries: int = 10):
        super().__init__()
        train = split.train
        keys = np.unique(train["user"].to_numpy() * split.num_items + train["item"].to_numpy())
        self.register_buffer("keys", torch.as_tensor(keys, dtype=torch.long), persistent=False)
        self.num_items = split.num_items
        self.tries = tries

    def _is_positive(self, users, items):
        q = users * self.num_items + items
        pos = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == q

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        neg = torch.randint(0, self.num_items, users.shape, device=users.device)
        for _ in range(self.tries):
            bad = self._is_positive(users, neg)
            if not bad.any():
                break
            neg = torch.where(bad, torch.randint(0, self.num_items, users.shape, device=users.device), neg)
        return neg


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(pos_scores - neg_scores).mean()
