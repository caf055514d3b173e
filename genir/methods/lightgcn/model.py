"""LightGCN: E^(l+1) = D^-1/2 A D^-1/2 E^(l) on the bipartite user-item graph of the training split, final
embedding = mean of layers 0..L; BPR loss plus reg_weight * ||ego embeddings of the batch||^2 / batch size
(the paper's and RecBole's regularizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from genir.data.split import Split
from genir.models.base import MethodConfig, PropagatedRecommender
from genir.models.graph import normalized_adjacency
from genir.models.sampling import NegativeSampler, bpr_loss


@dataclass
class LightGCNConfig(MethodConfig):
    embedding_size: int = 64
    n_layers: int = 2  # RecBole's default on ml-100k
    reg_weight: float = 1e-5  # L2 on the batch's ego embeddings


class LightGCN(PropagatedRecommender):
    config_class = LightGCNConfig
    # lr tuned on ml-100k validation (recipes/tune_baselines.py)
    trainer_defaults: ClassVar[dict] = {"lr": 1e-2, "batch_size": 2048, "epochs": 300, "patience": 10}

    def __init__(self, config: LightGCNConfig, split: Split):
        super().__init__(config, split)
        self.embedding = nn.Embedding(split.num_users + split.num_items, config.embedding_size)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.register_buffer("adj", normalized_adjacency(split), persistent=False)
        self.sampler = NegativeSampler(split)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embedding.weight
        layers = [e]
        for _ in range(self.config.n_layers):
            e = torch.sparse.mm(self.adj, e)
            layers.append(e)
        out = torch.stack(layers).mean(0)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, batch) -> torch.Tensor:
        self.forget()
        users, pos = batch
        neg = self.sampler(users)
        u_all, i_all = self.propagate()
        u = u_all[users]
        loss = bpr_loss((u * i_all[pos]).sum(-1), (u * i_all[neg]).sum(-1))
        ego = self.embedding.weight
        reg = (ego[users].pow(2).sum() + ego[pos + self.num_users].pow(2).sum()
               + ego[neg + self.num_users].pow(2).sum()) / len(users)
        return loss + self.config.reg_weight * reg
