"""LightGCN: E^(l+1) = D^-1/2 A D^-1/2 E^(l) on the bipartite user-item graph of the training split, final
embedding = mean of layers 0..L; BPR loss plus reg_weight * ||ego embeddings of the batch||^2 / batch size
(the paper's and RecBole's regularizer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genir.data.split import Split
from genir.methods.base import MethodConfig, PropagatedRecommender
from genir.methods.bpr.model import NegativeSampler, bpr_loss


@dataclass
class LightGCNConfig(MethodConfig):
    embedding_size: int = 64
    n_layers: int = 2  # RecBole's default on ml-100k
    reg_weight: float = 1e-5  # L2 on the batch's ego embeddings


def normalized_adjacency(split: Split) -> torch.Tensor:
    """Symmetric-normalized (U+I) x (U+I) adjacency of the training interactions, as a sparse COO tensor."""
    r = split.train_matrix().tocoo()
    n_u, n_i = split.num_users, split.num_items
    rows = np.concatenate([r.row, r.col + n_u])
    cols = np.concatenate([r.col + n_u, r.row])
    a = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_u + n_i, n_u + n_i)).tocsr()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    a = sp.diags(inv) @ a @ sp.diags(inv)
    a = a.tocoo()
    idx = torch.as_tensor(np.vstack([a.row, a.col]), dtype=torch.long)
    values = torch.as_tensor(a.data, dtype=torch.float32)
    return torch.sparse_coo_tensor(idx, values, a.shape, check_invariants=True).coalesce()


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
