"""MIG-GT on genir: Modality-Independent GNNs (MIRF) + a Sampling-based Global Transformer (SGT).

Each modality gets its own propagation over the user-item graph with its own number of hops K, because the
best receptive field differs by modality (ID embeddings want many hops, content features few). The branches
are summed; the SGT then lets every node attend to C items drawn uniformly from the whole catalogue, a cheap
global view (O(N*C)) that counters over-smoothing. Loss: BPR + transformer unsmooth regularization (TUR) + L2.

Branches (all on the same graph, with the MGDCF recurrence ``h_{k+1} = beta * A h_k + alpha * h_0``, output
``h_K / gamma_K`` with ``gamma_K = beta^K + alpha * sum_{i<K} beta^i``; K = 0 returns ``h_0``, K < 0 drops it):

* ``id``: users hold learned ID embeddings; items hold learned ID embeddings too (``item_embedding``, the
  released code's ``use_item_emb``; the paper's configs keep items at zero, which on ml-100k validation trained
  much more slowly and stayed at NDCG@10 about 0.06 against about 0.075 with item embeddings);
* one per modality: users hold zeros, items hold their feature matrix through an MLP encoder.

Deviations from the paper (also in README.md):

* the normalized adjacency is the foundation's :func:`~genir.models.graph.normalized_adjacency`,
  rescaled to ``(D+I)^-1/2 (A+I) (D+I)^-1/2`` (the paper's graph with self-loops) when ``self_loops``;
* the branches are propagated together (features concatenated, one SpMM per hop, each branch read off at its
  own K): the same numbers as separate propagations, fewer sparse products; so one edge-dropout mask per step
  serves every branch (the paper draws one per branch);
* the loss is the paper's (summed BPR + 1/2 * l2_coef * ||final tables||^2) divided by the batch size, so the
  BPR term is the foundation's mean :func:`~genir.models.sampling.bpr_loss`; Adam is nearly scale-invariant,
  the ratio of the terms is the paper's; TUR is averaged over the batch's positives likewise;
* the SGT's global items at evaluation come from a fixed generator (``eval_seed``), so that scoring the same
  weights twice gives the same ranking; in training they are redrawn every step, as in the paper;
* the user and item ID embeddings share one dropout rate (``user_dropout``), and the defaults (lr 5e-2, ID and
  output dropout 0.1) were tuned on ml-100k validation: MovieLens is denser than the paper's Amazon sets;
* no per-epoch learning-rate decay (the one Trainer has a constant lr) and early stopping on valid NDCG@10
  (the paper: valid Recall@20);
* modality encoders are 2-layer MLPs of width ``hidden_size`` (128; paper 512); there is no visual modality on
  MovieLens-100K, so no random projection; the paper's unused parameters (memories, clusters) are not built.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.data.split import Split
from genir.errors import ConfigError
from genir.features.modalities import load_modalities, parse_modalities
from genir.methods.miggt.config import MIGGTConfig
from genir.models.base import PropagatedRecommender
from genir.models.graph import normalized_adjacency
from genir.models.sampling import NegativeSampler, bpr_loss

ID_BRANCH = "id"
BUILTIN = ("text", "kg", "cf")


def parse_name_ints(spec: str, field: str) -> dict[str, int]:
    """``"id=3,text=1"`` -> ``{"id": 3, "text": 1}`` (ConfigError naming ``field`` on a malformed entry)."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            out[name.strip()] = int(value)
        except ValueError:
            raise ConfigError(f"{field}: expected entries name=int separated by commas, got {part!r}") from None
    return out


def self_loop_adjacency(split: Split) -> torch.Tensor:
    """``(D+I)^-1/2 (A+I) (D+I)^-1/2`` from the foundation's ``D^-1/2 A D^-1/2``: entry (u, v) times
    ``sqrt(d_u d_v / ((d_u+1)(d_v+1)))``, plus ``1/(d+1)`` on the diagonal."""
    a = normalized_adjacency(split)
    r = split.train_matrix()
    deg = torch.as_tensor(np.concatenate([np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()]),
                          dtype=torch.float32)
    s = torch.sqrt(deg / (deg + 1))
    idx, val = a.indices(), a.values()
    n = len(deg)
    diag = torch.arange(n)
    idx = torch.cat([idx, torch.stack([diag, diag])], 1)
    val = torch.cat([val * s[idx[0, : len(val)]] * s[idx[1, : len(val)]], 1 / (deg + 1)])
    return torch.sparse_coo_tensor(idx, val, a.shape, check_invariants=True).coalesce()


def mgdcf_gamma(k: int, alpha: float, beta: float) -> float:
    """Normalizer of MGDCF after k hops: beta^k + alpha * sum_{i<k} beta^i (1 for k = 0)."""
    return beta**k + alpha * sum(beta**i for i in range(k))


def mgdcf_propagate(adj: torch.Tensor, h0: torch.Tensor, hops: list[int], widths: list[int],
                    alpha: float, beta: float) -> torch.Tensor:
    """Run ``h_{k+1} = beta * adj @ h_k + alpha * h_0`` on the column blocks of ``h0`` (block b has ``widths[b]``
    columns) and return, per block, ``h_{hops[b]} / gamma_{hops[b]}``, summed over blocks. (N, d)."""
    outs: list[torch.Tensor | None] = [None] * len(hops)
    starts = np.cumsum([0] + widths)
    h = h0
    for k in range(max(hops) + 1):
        if k > 0:
            h = beta * torch.sparse.mm(adj, h) + alpha * h0
        for b, kb in enumerate(hops):
            if kb == k:
                outs[b] = h[:, starts[b]: starts[b + 1]] / mgdcf_gamma(k, alpha, beta)
    return torch.stack(outs).sum(0)


class ModalityEncoder(nn.Sequential):
    """Item features -> embedding: input dropout, Linear + BatchNorm + PReLU + dropout, Linear + BatchNorm + PReLU
    (the branch applies its own ``item_dropout`` to the output)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, input_dropout: float, dropout: float):
        super().__init__(nn.Dropout(input_dropout),
                         nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.PReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_dim), nn.BatchNorm1d(out_dim), nn.PReLU())


class SampledGlobalTransformer(nn.Module):
    """One attention block over ``[z_node, z_s1 .. z_sC]`` (the node and C sampled items): query/key maps of width
    ``attention_size``, identity values, no LayerNorm or FFN; output ``w * attention + (1 - w) * tokens``."""

    def __init__(self, dim: int, attention_size: int, weight: float):
        super().__init__()
        self.query = nn.Linear(dim, attention_size)
        self.key = nn.Linear(dim, attention_size)
        self.weight = weight

    def forward(self, nodes: torch.Tensor, items: torch.Tensor, samples: torch.Tensor,
                all_tokens: bool = True) -> torch.Tensor:
        """nodes (N, d), items (I, d), samples (N, C) item indices -> output tokens (N, C+1, d), or only the
        node's own token (N, 1, d) when ``all_tokens`` is False (the others are only needed by the TUR loss)."""
        tokens = torch.cat([nodes.unsqueeze(1), items[samples]], 1)  # (N, C+1, d)
        queries = tokens if all_tokens else tokens[:, :1]
        q, k = self.query(queries), self.key(tokens)  # (N, Q, a), (N, C+1, a)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)  # (N, Q, C+1)
        return self.weight * (att @ tokens) + (1 - self.weight) * queries


class MIGGT(PropagatedRecommender):
    config_class = MIGGTConfig
    # batch of training edges per full-graph step; lr tuned on ml-100k validation (README.md)
    trainer_defaults: ClassVar[dict] = {"lr": 5e-2, "batch_size": 8192, "epochs": 80, "patience": 15}
    eval_seed = 0

    def __init__(self, config: MIGGTConfig, split: Split):
        super().__init__(config, split)
        c = config
        if c.num_samples < 1 and c.use_transformer:
            raise ConfigError(f"num_samples must be >= 1 with the transformer on, got {c.num_samples}")
        if not 0 <= c.transformer_weight <= 1:
            raise ConfigError(f"transformer_weight must be in [0, 1], got {c.transformer_weight}")
        dims = parse_name_ints(c.feature_dims, "feature_dims")
        names = [n for n, _ in parse_modalities(c.modalities)]
        if ID_BRANCH in names:
            raise ConfigError(f"modalities: the name {ID_BRANCH!r} is reserved for the ID-embedding branch")
        hops = parse_name_ints(c.hops, "hops")
        unknown = sorted(set(hops) - set(names) - {ID_BRANCH} - set(BUILTIN))
        if unknown:
            raise ConfigError(f"hops: no branch named {unknown}; branches: {[ID_BRANCH] + names}")
        unknown = sorted(set(dims) - set(names))
        if unknown:
            raise ConfigError(f"feature_dims: no modality named {unknown}; modalities: {names}")
        features = self.saved_input("modalities", lambda: load_modalities(
            split, c.modalities, cf_method=c.cf_method, dim=c.embedding_size, seed=c.feature_seed, dims=dims))
        self.hops = {n: hops.get(n, c.default_hops) for n in [ID_BRANCH] + names}
        self.modalities = [n for n in names if self.hops[n] >= 0]
        if not self.modalities and self.hops[ID_BRANCH] < 0:
            raise ConfigError(f"hops {c.hops!r}: every branch is turned off (K < 0)")

        d = c.embedding_size
        self.user_emb = nn.Embedding(split.num_users, d) if self.hops[ID_BRANCH] >= 0 else None
        if self.user_emb is not None:
            nn.init.normal_(self.user_emb.weight, std=1 / math.sqrt(d))
        self.item_emb = (nn.Embedding(split.num_items, d) if self.user_emb is not None and c.item_embedding
                         else None)
        if self.item_emb is not None:
            nn.init.normal_(self.item_emb.weight, std=1 / math.sqrt(d))
        self.encoders = nn.ModuleDict({n: ModalityEncoder(features[n].shape[1], c.hidden_size, d, c.input_dropout,
                                                          c.feat_dropout) for n in self.modalities})
        for n in self.modalities:
            self.register_buffer(f"feat_{n}", torch.as_tensor(features[n]), persistent=False)
        self.transformer = (SampledGlobalTransformer(d, c.attention_size, c.transformer_weight)
                            if c.use_transformer else None)
        adj = self_loop_adjacency(split) if c.self_loops else normalized_adjacency(split)
        self.register_buffer("adj", adj, persistent=False)
        self.sampler = NegativeSampler(split)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- forward -----------------------------------------------------------------------------------------------
    def _graph(self) -> torch.Tensor:
        if not self.training or self.config.edge_dropout <= 0:
            return self.adj
        values = F.dropout(self.adj.values(), self.config.edge_dropout)
        return torch.sparse_coo_tensor(self.adj.indices(), values, self.adj.shape,
                                       is_coalesced=True, check_invariants=False)

    def branch_sum(self) -> torch.Tensor:
        """(U+I, d): sum of the branch outputs (MIRF), before z-dropout and the transformer."""
        c, n_u, n_i, d = self.config, self.num_users, self.num_items, self.config.embedding_size
        blocks, hops = [], []
        if self.user_emb is not None:
            users = F.dropout(self.user_emb.weight, c.user_dropout, self.training)
            items = (F.dropout(self.item_emb.weight, c.user_dropout, self.training) if self.item_emb is not None
                     else users.new_zeros(n_i, d))
            blocks.append(torch.cat([users, items]))
            hops.append(self.hops[ID_BRANCH])
        for n in self.modalities:
            items = F.dropout(self.encoders[n](getattr(self, f"feat_{n}")), c.item_dropout, self.training)
            blocks.append(torch.cat([items.new_zeros(n_u, d), items]))
            hops.append(self.hops[n])
        return mgdcf_propagate(self._graph(), torch.cat(blocks, 1), hops, [d] * len(hops), c.alpha, c.beta)

    def encode(self, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(users (U, d), items (I, d), item token sets (I, C+1, d) for the TUR loss: None in eval mode or
        without the transformer)."""
        z = F.dropout(self.branch_sum(), self.config.z_dropout, self.training)
        if self.transformer is None:
            return z[: self.num_users], z[self.num_users:], None
        samples = torch.randint(0, self.num_items, (len(z), self.config.num_samples), device=z.device,
                                generator=generator)
        items = z[self.num_users:]
        users = self.transformer(z[: self.num_users], items, samples[: self.num_users], all_tokens=False)[:, 0]
        if not self.training:
            return users, self.transformer(items, items, samples[self.num_users:], all_tokens=False)[:, 0], None
        tokens = self.transformer(items, items, samples[self.num_users:])  # (I, C+1, d)
        return users, tokens[:, 0], tokens

    # -- training ----------------------------------------------------------------------------------------------
    def loss(self, batch) -> torch.Tensor:
        self._cache = None
        users, pos = batch
        neg = self.sampler(users)
        u_all, i_all, item_tokens = self.encode()
        u = u_all[users]
        loss = bpr_loss((u * i_all[pos]).sum(-1), (u * i_all[neg]).sum(-1))
        if item_tokens is not None and self.config.tur_weight > 0:
            logits = torch.einsum("bd,bcd->bc", u, item_tokens[pos])  # (B, C+1): own token is class 0
            loss = loss + self.config.tur_weight * F.cross_entropy(logits, torch.zeros_like(pos))
        l2 = 0.5 * (u_all.pow(2).sum() + i_all.pow(2).sum()) / len(users)
        return loss + self.config.l2_coef * l2

    # -- inference (PropagatedRecommender scores with the cached vectors) ----------------------------------------
    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users, items) with the transformer's neighbour samples drawn from a fixed seed, so scoring is
        deterministic."""
        gen = torch.Generator(device=self.adj.device).manual_seed(self.eval_seed)
        u, i, _ = self.encode(gen)
        return u, i

    def item_embeddings(self) -> torch.Tensor:
        self.prepare_eval()
        return self._cache[1]
