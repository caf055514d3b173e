"""MetaMMF (Liu et al., ACM TOIS; arXiv 2501.07110): a meta learner generates each item's own multimodal fusion.

Each item's modality features are concatenated into ``x_i``; a meta-information extractor maps ``x_i`` to a small
meta vector ``s_i``; every layer of the fusion MLP then uses item-specific weights
``W_l(i) = M_l + s_i . T_l`` (``M_l`` static, ``T_l`` a ``s_dim x d_in x d_out`` tensor). The fused vector is
concatenated with a free item-ID embedding; users are free embeddings; score = inner product (MetaMMF_MF), or
the inner product after graph propagation (MetaMMF_GCN); loss = BPR.

``fusion="full"`` generates and applies the per-item weight matrices as the paper does (a ``(B, d_in, d_out)``
tensor per layer and batch). ``fusion="cp"`` writes ``T_l`` as a true CP decomposition, a sum of R rank-1 terms
``T_l = sum_r c_r (x) a_r (x) b_r``; then ``h W_l(i) = h M_l + ((h A) * (s_i C)) B`` and no per-item matrix is
ever formed (O(R (d_in + d_out)) per item instead of O(d_in d_out)). ``fusion="static"`` is the ablation
``W_l(i) = M_l``: concatenation + MLP.

Deviations from the paper (also in the README):
* Inputs: ML-100K has no video/audio; the modalities are MiniLM text, KG and CF embeddings (or user files),
  each centred, PCA-reduced to ``pca_dim`` columns and scaled to unit mean row norm before concatenation
  (the released code keeps a PCA path too). Widths are scaled down (input 96, fusion 64 -> 32, s_dim 8, R 8)
  so that the full variant fits a CPU budget.
* The CP layer is a real CP decomposition; the released ``cpd_layer.py`` sums over the rank before the outer
  product, so its generated weight is one scalar times a fixed matrix.
* Negatives are resampled every step with the foundation's NegativeSampler (the release draws them once).
* With the mf backbone only the items of the batch are fused (the release fuses the whole catalogue at every
  step); the gcn backbone (default) needs every item and fuses them all.
* ``backbone="gcn"`` uses LightGCN propagation (the foundation's normalized adjacency, layer mean) instead of
  the paper's two GraphSAGE layers, whose released dimensions do not fit together.
* Regularization is the optimizer's weight decay, as in the release, plus dropout on the fusion input (chosen on
  validation); one negative per positive by default (the release: 5), lr 1e-2 and batch 8192 (release: 1e-3, 3000).
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split
from genir.features.modalities import load_modalities
from genir.methods.metammf.config import MetaMMFConfig, parse_dims
from genir.models.base import PropagatedRecommender
from genir.models.graph import normalized_adjacency
from genir.models.sampling import NegativeSampler, bpr_loss


def fusion_input(modalities: dict[str, np.ndarray], pca_dim: int) -> torch.Tensor:
    """Concatenation of the modalities, each centred, PCA-reduced to ``pca_dim`` columns (0 = keep all) and
    scaled to unit mean row norm so that no modality dominates by its scale. (num_items, sum of widths)."""
    parts = []
    for matrix in modalities.values():
        x = torch.as_tensor(matrix, dtype=torch.float64)
        x = x - x.mean(0, keepdim=True)
        if 0 < pca_dim < x.shape[1]:
            u, s, _ = torch.linalg.svd(x, full_matrices=False)
            x = u[:, :pca_dim] * s[:pca_dim]  # principal-component scores
        norm = x.norm(dim=1).mean()
        parts.append(x / norm if norm > 0 else x)
    return torch.cat(parts, 1).float()


class MetaInfoExtractor(nn.Module):
    """x_i -> s_i: what kind of item this is (Linear, ReLU, Linear; the paper's s_dim is 5)."""

    def __init__(self, d_in: int, hidden: int, meta_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, meta_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, s_dim)


class StaticLayer(nn.Module):
    """h -> h M: the shared weight of every fusion layer, and the whole layer of the static ablation."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.M = nn.Parameter(torch.empty(d_in, d_out))
        nn.init.xavier_uniform_(self.M)

    def weights(self, s: torch.Tensor) -> torch.Tensor:
        """(B, d_in, d_out) weight of each item (for inspection and tests)."""
        return self.M.expand(len(s), -1, -1)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return h @ self.M


class FullMetaLayer(StaticLayer):
    """W(i) = M + reshape(s_i T): the per-item weight matrix is generated and applied, as in the paper."""

    def __init__(self, d_in: int, d_out: int, meta_dim: int):
        super().__init__(d_in, d_out)
        # each slice T_k like a xavier matrix / sqrt(s_dim): the dynamic part starts at the static part's scale
        bound = math.sqrt(6.0 / (d_in + d_out)) / math.sqrt(meta_dim)
        self.T = nn.Parameter(torch.empty(meta_dim, d_in, d_out).uniform_(-bound, bound))

    def weights(self, s: torch.Tensor) -> torch.Tensor:
        return self.M + (s @ self.T.flatten(1)).view(len(s), *self.M.shape)  # (B, d_in, d_out)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.bmm(h.unsqueeze(1), self.weights(s)).squeeze(1)


class CPMetaLayer(StaticLayer):
    """T = sum_r c_r (x) a_r (x) b_r with factors A (d_in, R), B (R, d_out), C (s_dim, R), so that
    W(i) = M + A diag(s_i C) B and h W(i) = h M + ((h A) * (s_i C)) B, computed without forming W(i)."""

    def __init__(self, d_in: int, d_out: int, meta_dim: int, rank: int):
        super().__init__(d_in, d_out)
        self.A = nn.Parameter(torch.randn(d_in, rank) / math.sqrt(d_in))
        self.B = nn.Parameter(torch.randn(rank, d_out) * math.sqrt(2.0 / (rank + d_out)))
        self.C = nn.Parameter(torch.randn(meta_dim, rank) / math.sqrt(meta_dim))

    def weights(self, s: torch.Tensor) -> torch.Tensor:
        return self.M + torch.einsum("ir,br,ro->bio", self.A, s @ self.C, self.B)

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return h @ self.M + ((h @ self.A) * (s @ self.C)) @ self.B


class MetaFusionNetwork(nn.Module):
    """The item-specific fusion MLP: layers without bias, LeakyReLU between them (as in the paper)."""

    def __init__(self, d_in: int, dims: tuple, fusion: str, meta_dim: int, rank: int):
        super().__init__()
        widths = [d_in, *dims]
        layers = []
        for a, b in itertools.pairwise(widths):
            if fusion == "full":
                layers.append(FullMetaLayer(a, b, meta_dim))
            elif fusion == "cp":
                layers.append(CPMetaLayer(a, b, meta_dim, rank))
            else:
                layers.append(StaticLayer(a, b))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.layers):
            h = layer(h, s)
            if k < len(self.layers) - 1:
                h = F.leaky_relu(h)
        return h


class MetaMMF(PropagatedRecommender):
    config_class = MetaMMFConfig
    # chosen on ml-100k validation (3 seeds); the sweep is in the README
    trainer_defaults: ClassVar[dict] = {"lr": 1e-2, "batch_size": 8192, "weight_decay": 1e-6, "optimizer": "adam", "epochs": 300,
                                        "patience": 10}

    def __init__(self, config: MetaMMFConfig, split: Split):
        super().__init__(config, split)
        c = config
        mods = self.saved_input("modalities", lambda: load_modalities(split, c.modalities,
                                                                      dims=parse_dims(c.modality_dims)))
        if not c.modality_dims:  # record the widths, so a reloaded run checks that its files still fit
            c.modality_dims = ",".join(f"{k}={v.shape[1]}" for k, v in mods.items())
        self.register_buffer("features", fusion_input(mods, c.pca_dim))  # (num_items, d_in)
        d_in = self.features.shape[1]
        self.input_dropout = nn.Dropout(c.dropout)
        self.meta = MetaInfoExtractor(d_in, c.meta_hidden, c.meta_dim) if c.fusion != "static" else None
        self.fusion = MetaFusionNetwork(d_in, c.fusion_dims, c.fusion, c.meta_dim, c.cp_rank)
        dim = c.fusion_dims[-1] + c.id_dim
        self.user_emb = nn.Embedding(split.num_users, dim)
        self.item_id_emb = nn.Embedding(split.num_items, c.id_dim)
        nn.init.normal_(self.user_emb.weight, std=c.init_std)
        nn.init.normal_(self.item_id_emb.weight, std=c.init_std)
        self.sampler = NegativeSampler(split)
        if c.backbone == "gcn":
            self.register_buffer("adj", normalized_adjacency(split), persistent=False)

    # -- representations -----------------------------------------------------------------------------------------
    def meta_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """(B, s_dim) meta vectors s_i of ``items`` (zeros for static fusion)."""
        x = self.features[items]
        if self.meta is None:
            return x.new_zeros(len(items), self.config.meta_dim)
        return self.meta(x)

    def item_representations(self, items: torch.Tensor) -> torch.Tensor:
        """(B, fused + id_dim): [item-specific fusion of x_i ; item-ID embedding]."""
        x = self.input_dropout(self.features[items])
        s = self.meta(x) if self.meta is not None else None
        return torch.cat([self.fusion(x, s), self.item_id_emb(items)], -1)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) representations of the whole catalogue, after the backbone."""
        items = self.item_representations(torch.arange(self.num_items, device=self.features.device))
        users = self.user_emb.weight
        if self.config.backbone == "mf":
            return users, items
        e = torch.cat([users, items])
        layers = [e]
        for _ in range(self.config.n_layers):
            e = torch.sparse.mm(self.adj, e)
            layers.append(e)
        e = torch.stack(layers).mean(0)
        return e[: self.num_users], e[self.num_users:]

    # -- training ------------------------------------------------------------------------------------------------
    def loss(self, batch) -> torch.Tensor:
        self.forget()
        users, pos = batch
        k = self.config.num_negatives
        neg = self.sampler(users.repeat_interleave(k)).view(len(users), k)  # (B, k)
        if self.config.backbone == "gcn":
            u_all, i_all = self.propagate()
            u, p, n = u_all[users], i_all[pos], i_all[neg]
        else:
            uniq, inv = torch.unique(torch.cat([pos, neg.flatten()]), return_inverse=True)
            reps = self.item_representations(uniq)[inv]  # fuse each item of the batch once
            u, p, n = self.user_emb(users), reps[: len(users)], reps[len(users):].view(len(users), k, -1)
        pos_scores = (u * p).sum(-1, keepdim=True)  # (B, 1)
        neg_scores = (u.unsqueeze(1) * n).sum(-1)  # (B, k)
        return bpr_loss(pos_scores.expand_as(neg_scores), neg_scores)
