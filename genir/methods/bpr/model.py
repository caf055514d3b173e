"""BPR-MF: user and item embeddings, score = dot product, loss = -log sigmoid(s(u,i) - s(u,j)) with one uniformly
sampled negative j per positive, rejected and re-drawn when it is one of the user's training items (as RecBole's
uniform sampler does). L2 regularization is the optimizer's weight decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split
from genir.eval.evaluator import EvalBatch
from genir.methods.base import MethodConfig, Recommender


@dataclass
class BPRConfig(MethodConfig):
    embedding_size: int = 64  # d, as RecBole's default
    init_std: float = 0.1  # normal init of both tables (RecBole uses xavier; 0.1 and 0.03 measured alike here)


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


class BPR(Recommender):
    config_class = BPRConfig
    # lr and weight decay tuned on ml-100k validation (recipes/tune_baselines.py)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-2, "batch_size": 2048, "weight_decay": 1e-5, "epochs": 300, "patience": 10}

    def __init__(self, config: BPRConfig, split: Split):
        super().__init__(config, split)
        self.user_emb = nn.Embedding(split.num_users, config.embedding_size)
        self.item_emb = nn.Embedding(split.num_items, config.embedding_size)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        self.sampler = NegativeSampler(split)

    def loss(self, batch) -> torch.Tensor:
        users, pos = batch
        neg = self.sampler(users)
        u = self.user_emb(users)
        return bpr_loss((u * self.item_emb(pos)).sum(-1), (u * self.item_emb(neg)).sum(-1))

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        return self.user_emb(batch.users) @ self.item_emb.weight.T

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight.detach()
