"""Baselines that answer the same multiple-choice questions as Bundle-LLM (every one has ``choice_scores``, so
:class:`~genir.methods.bundlellm.training.ChoiceEvaluator` scores them all alike).

* :class:`RandomChoice`: a uniformly random candidate (seeded).
* :class:`PopularityChoice`: the candidate in most TRAINING bundles (random tie-break).
* :class:`CoOccurrenceChoice`: the candidate that shares the most training bundles with the partial bundle's items
  (sum over the partial items of co-membership counts; popularity, then a random draw, break ties).
* :class:`DiscriminativeBundleModel`: a small discriminative bundle model in the style of CLHE (Ma et al., 2024):
  each item's frozen features (media + dependency-graph + bundle-item, the views Bundle-LLM fuses) go through an
  item MLP; a Transformer encoder over a [BUNDLE] token plus the partial bundle's items gives the bundle vector;
  a candidate's score is its dot product with it; trained with cross-entropy over the candidates of training
  questions. CLHE's hierarchical item-level attention over modalities and its contrastive losses are not
  reproduced: this is the discriminative reference point, trained from scratch on our bundles (nothing pretrained).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from genir.data.bundles import BundleQuestion, BundleSet


def _tiebreak(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.random(shape) * 1e-6


def _membership(data: BundleSet, train_bundles) -> sp.csr_matrix:
    rows = [b for b in np.asarray(train_bundles).tolist() for _ in data.members[b]]
    cols = [i for b in np.asarray(train_bundles).tolist() for i in data.members[b].tolist()]
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(data.num_bundles, data.num_items))


class RandomChoice:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def choice_scores(self, questions: list[BundleQuestion], generate: bool = False, **_):
        return torch.as_tensor(self.rng.random((len(questions), len(questions[0].candidates)))), None, None


class PopularityChoice:
    def __init__(self, data: BundleSet, train_bundles, seed: int = 0):
        self.popularity = np.asarray(_membership(data, train_bundles).sum(0)).ravel()
        self.rng = np.random.default_rng(seed)

    def choice_scores(self, questions, generate: bool = False, **_):
        c = np.array([q.candidates for q in questions])
        return torch.as_tensor(self.popularity[c] + _tiebreak(self.rng, c.shape)), None, None


class CoOccurrenceChoice:
    def __init__(self, data: BundleSet, train_bundles, seed: int = 0):
        m = _membership(data, train_bundles)
        self.co = (m.T @ m).tocsr()  # (I, I) co-membership counts (diagonal = popularity)
        self.popularity = np.asarray(m.sum(0)).ravel()
        self.rng = np.random.default_rng(seed)

    def choice_scores(self, questions, generate: bool = False, **_):
        out = np.zeros((len(questions), len(questions[0].candidates)))
        for r, q in enumerate(questions):
            sub = self.co[list(q.partial)][:, list(q.candidates)]
            out[r] = np.asarray(sub.sum(0)).ravel() + 1e-3 * self.popularity[list(q.candidates)] / \
                max(1.0, self.popularity.max())
        return torch.as_tensor(out + _tiebreak(self.rng, out.shape)), None, None


class DiscriminativeBundleModel(nn.Module):
    """CLHE-style discriminative bundle completion over frozen item features (see the module docstring)."""

    def __init__(self, features: np.ndarray, dim: int = 64, layers: int = 1, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("features", torch.as_tensor(features, dtype=torch.float32), persistent=False)
        self.item = nn.Sequential(nn.LayerNorm(features.shape[1]), nn.Linear(features.shape[1], dim), nn.GELU(),
                                  nn.Linear(dim, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.bundle_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.bundle_token, std=0.02)
        self.dim = dim
        self.collate = list

    def scores(self, questions: list[BundleQuestion]) -> torch.Tensor:
        device = self.features.device
        width = max(len(q.partial) for q in questions)
        partial = torch.full((len(questions), width), -1, dtype=torch.long, device=device)
        for r, q in enumerate(questions):
            partial[r, : len(q.partial)] = torch.tensor(q.partial, device=device)
        pad = partial < 0
        x = self.item(self.features[partial.clamp_min(0)])  # (B, P, d)
        x = torch.cat([self.bundle_token.expand(len(questions), 1, self.dim), x], dim=1)
        mask = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        bundle = self.encoder(x, src_key_padding_mask=mask)[:, 0]  # (B, d)
        cands = torch.tensor([q.candidates for q in questions], device=device)
        c = self.item(self.features[cands])  # (B, N, d)
        return (c * bundle[:, None]).sum(-1) / math.sqrt(self.dim)

    def forward(self, batch: list[BundleQuestion]) -> torch.Tensor:
        target = torch.tensor([q.answer for q in batch], device=self.features.device)
        return nn.functional.cross_entropy(self.scores(batch), target)

    @torch.no_grad()
    def choice_scores(self, questions, generate: bool = False, **_):
        return self.scores(questions), None, None
