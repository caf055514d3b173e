"""BPR-MF: user and item embeddings, score = dot product, loss = -log sigmoid(s(u,i) - s(u,j)) with one uniformly
sampled negative j per positive, rejected and re-drawn when it is one of the user's training items (as RecBole's
uniform sampler does). L2 regularization is the optimizer's weight decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from genir.data.split import Split
from genir.eval.evaluator import EvalBatch
from genir.models.base import MethodConfig, Recommender
from genir.models.sampling import NegativeSampler, bpr_loss


@dataclass
class BPRConfig(MethodConfig):
    embedding_size: int = 64  # d, as RecBole's default
    init_std: float = 0.1  # normal init of both tables (RecBole uses xavier; 0.1 and 0.03 measured alike here)


class BPR(Recommender):
    config_class = BPRConfig
    needs_known_users: ClassVar[bool] = True  # scores come from a learned user table
    # lr and weight decay tuned on ml-100k validation (recipes/tune_baselines.py)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-2, "batch_size": 2048, "weight_decay": 1e-5, "optimizer": "adam", "epochs": 300, "patience": 10}

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
