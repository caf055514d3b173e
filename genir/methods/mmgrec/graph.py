"""MMGRec's graph encoder: GraphSAGE over the user-item graph of the training split, item inputs from multimodal
features, trained with BPR; its frozen 64-d item vectors are quantized into Rec-IDs (the Graph RQ-VAE) and read
by the generative recommender, and its user vectors gate the relation-aware attention.

As in the paper's code: item input = Linear(d_features -> 128, no bias) of the concatenated modalities, users a
free 128-d embedding; two mean-aggregation GraphSAGE layers, ``h' = W [h || mean of neighbours]``, 128 -> 128
(LeakyReLU, dropout 0.5) then -> 64 (dropout 0.2); BPR on (user, positive, sampled negative); Adam lr 1e-3,
weight decay 1e-6, batch 3000. Deviations: training runs on genir's Trainer with early stopping on validation
NDCG@10 (the paper trains a fixed 60 epochs) and one negative is sampled per positive each epoch (the paper
pre-samples triples once). Representations are cached on disk by (features, split, settings, seed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split
from genir.models.base import MethodConfig, PropagatedRecommender
from genir.models.sampling import NegativeSampler, bpr_loss


@dataclass
class GraphEncoderConfig(MethodConfig):
    hidden: int = 128  # paper: 128
    out_dim: int = 64  # paper: 64
    dropout_hidden: float = 0.5  # paper: 0.5 after layer 1
    dropout_out: float = 0.2  # paper: 0.2 after layer 2


def _mean_matrix(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """Sparse (n_rows, n_cols) matrix averaging each row's neighbours (rows without neighbours stay zero)."""
    a = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape).tocsr()
    a.data[:] = 1.0  # repeated interactions count once
    deg = np.asarray(a.sum(1)).ravel()
    a = (sp.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0).astype(np.float32)) @ a).tocoo()
    idx = torch.as_tensor(np.vstack([a.row, a.col]), dtype=torch.long)
    return torch.sparse_coo_tensor(idx, torch.as_tensor(a.data, dtype=torch.float32), shape,
                                   check_invariants=True).coalesce()


class GraphSAGEEncoder(PropagatedRecommender):
    """BPR-trained GraphSAGE over users and feature-initialised items (module docstring)."""

    config_class = GraphEncoderConfig
    trainer_defaults: ClassVar[dict] = {"lr": 1e-3, "weight_decay": 1e-6, "optimizer": "adam", "batch_size": 3000, "epochs": 60,
                                        "patience": 10}

    def __init__(self, config: GraphEncoderConfig, split: Split, features: np.ndarray):
        super().__init__(config, split)
        c = config
        self.register_buffer("features", torch.as_tensor(np.asarray(features, dtype=np.float32)), persistent=False)
        self.item_in = nn.Linear(self.features.shape[1], c.hidden, bias=False)
        self.user_emb = nn.Embedding(split.num_users, c.hidden)
        nn.init.xavier_uniform_(self.user_emb.weight)
        self.layer1 = nn.Linear(2 * c.hidden, c.hidden)
        self.layer2 = nn.Linear(2 * c.hidden, c.out_dim)
        r = split.train_matrix().tocoo()
        self.register_buffer("user_mean", _mean_matrix(r.row, r.col, (split.num_users, split.num_items)),
                             persistent=False)
        self.register_buffer("item_mean", _mean_matrix(r.col, r.row, (split.num_items, split.num_users)),
                             persistent=False)
        self.sampler = NegativeSampler(split)

    def _sage(self, layer, h_self, h_neigh, mean):
        return layer(torch.cat([h_self, torch.sparse.mm(mean, h_neigh)], dim=1))

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (U, out_dim), items (N, out_dim))."""
        c = self.config
        hu, hi = self.user_emb.weight, self.item_in(self.features)
        hu1 = F.dropout(F.leaky_relu(self._sage(self.layer1, hu, hi, self.user_mean)), c.dropout_hidden, self.training)
        hi1 = F.dropout(F.leaky_relu(self._sage(self.layer1, hi, hu, self.item_mean)), c.dropout_hidden, self.training)
        hu2 = F.dropout(self._sage(self.layer2, hu1, hi1, self.user_mean), c.dropout_out, self.training)
        hi2 = F.dropout(self._sage(self.layer2, hi1, hu1, self.item_mean), c.dropout_out, self.training)
        return hu2, hi2

    def inductive_items(self, features: torch.Tensor) -> torch.Tensor:
        """Vectors of items that have no interactions (new items)."""
        return vectors_without_neighbours(self.item_in, self.layer1, self.layer2, features)

    def loss(self, batch) -> torch.Tensor:
        self.forget()
        users, pos = batch
        u_all, i_all = self.propagate()
        u = u_all[users]
        return bpr_loss((u * i_all[pos]).sum(-1), (u * i_all[self.sampler(users)]).sum(-1))


@torch.no_grad()
def vectors_without_neighbours(item_in: nn.Linear, layer1: nn.Linear, layer2: nn.Linear,
                               features: torch.Tensor) -> torch.Tensor:
    """Eval-mode GraphSAGE output of items with an empty neighbourhood (the mean of no neighbours is zero)."""
    zero = torch.zeros(features.shape[0], layer1.in_features // 2, device=features.device)
    h = F.leaky_relu(layer1(torch.cat([item_in(features), zero], dim=1)))
    return layer2(torch.cat([h, zero], dim=1))


def graph_representations(split: Split, features: np.ndarray, config: GraphEncoderConfig | None = None,
                          seed: int = 0, trainer: dict | None = None, cache: bool = True,
                          return_model: bool = False):
    """(item vectors (N, out_dim), user vectors (U, out_dim)) of a GraphSAGE encoder trained on ``split``'s
    training interactions with ``features`` as item inputs; cached by content (features, split rows, settings).
    ``return_model`` also returns the trained encoder (then nothing is read from the cache)."""
    from genir.features.cache import cached
    from genir.training import Trainer, TrainerConfig

    config = config or GraphEncoderConfig()
    features = np.ascontiguousarray(features, dtype=np.float32)
    trainer_cfg = TrainerConfig.for_method(GraphSAGEEncoder, {"seed": seed, "progress": False, **(trainer or {})},
                                           source="mmgrec graph encoder: trainer")
    params = {"config": config.to_dict(), "trainer": {k: v for k, v in vars(trainer_cfg).items()
                                                       if k not in ("progress", "output_dir", "cpu")},
              "features_sha256": hashlib.sha256(features.tobytes()).hexdigest(), "shape": list(features.shape),
              "split_sha256": split.fingerprint()}
    model_box = []

    def compute() -> np.ndarray:
        from accelerate.utils import set_seed

        set_seed(seed)
        model = GraphSAGEEncoder(config, split, features)
        Trainer(model, split, config=trainer_cfg).fit()
        model.eval()
        with torch.no_grad():
            users, items = (t.float().cpu().numpy() for t in model.propagate())
        model_box.append(model.cpu())
        return np.concatenate([items, users]).astype(np.float32)

    if return_model:  # train now, and leave the result in the cache for the recommender that reads it
        both = compute()
        if cache:
            cached("mmgrec_graph", params, split.dataset.fingerprint(), lambda: both)
    else:
        both = cached("mmgrec_graph", params, split.dataset.fingerprint(), compute) if cache else compute()
    items, users = both[: split.num_items], both[split.num_items:]
    return (items, users, model_box[0]) if return_model else (items, users)
