"""PromptDSI (Huynh et al., 2024): rehearsal-free incremental indexing with a pool of prefix prompts on a frozen
DSI encoder, and the L2P-style pool with learned keys that it fixes.

After D0 the encoder and D0's classifier rows are frozen. For each new corpus D_t only the prompts and D_t's new
rows train, on D_t's (pseudo-)queries and documents; no old document or query is replayed. A query picks the
``top_k`` pool entries whose keys are closest (cosine) to its *query feature*, and their prompts are prefixed to the
encoder's prompted layers.

* **Topic-aware keys (PromptDSI).** The keys are fixed topic embeddings of D0: here k-means centroids (faiss) of
  D0's document features, the pool size being the number of topics. The paper fits BERTopic (UMAP + HDBSCAN) on
  the encoder's embeddings and drops its outlier topic; k-means gives the same kind of fixed centroid keys without
  an outlier topic and without two more dependencies (a deviation, as in the method brief's CPU plan).
* **Learned keys (L2P).** Keys are parameters pulled toward the features of the queries that select them
  (``1 - cos``, L2P's surrogate loss). Keys that win early get pulled closer and win again, so few prompts are
  used: the collapse PromptDSI's fixed keys avoid. :attr:`PromptPool.train_usage` and ``eval_usage`` count selections for the histogram.
* **No second forward pass.** The query feature is the mean of the frozen layers' output, which the prompted
  forward computes anyway (see :mod:`genir.methods.dsi.encoder`). The paper removes the extra prompt-free pass of
  L2P/CODA-Prompt in its own way, which the method brief could not confirm from code; this is the option it lists
  first.
* Prompts sit on the encoder's upper (trainable-in-D0) layers, not the first ones: on the CPU the lower layers'
  output is cached, so prompts there would mean re-running the whole encoder for every example. With
  ``trainable_layers`` equal to the encoder's depth the prompts sit on every layer from the first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.methods.dsi.atomic import AtomicDSI, RowScorer
from genir.methods.dsi.encoder import masked_mean


def topic_keys(features: np.ndarray, n_topics: int, seed: int = 0) -> np.ndarray:
    """(n_topics, H) k-means centroids of (N, H) features (cosine: features normalised first)."""
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    km = faiss.Kmeans(x.shape[1], int(n_topics), niter=25, seed=int(seed), spherical=True, verbose=False)
    km.train(x)
    return km.centroids.copy()


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


class PromptedDSI(RowScorer):
    """A frozen :class:`AtomicDSI` whose query encoding takes prompts from a pool; only the pool and the rows the
    caller leaves trainable (the new block) train. ``pull_weight`` scales L2P's key loss (ignored with fixed
    keys)."""

    def __init__(self, dsi: AtomicDSI, pool: PromptPool, pull_weight: float = 0.1):
        super().__init__()
        self.dsi = dsi
        self.pool = pool
        self.pull_weight = pull_weight
        for p in dsi.encoder.parameters():
            p.requires_grad_(False)

    @property
    def num_items(self) -> int:
        return self.dsi.num_items

    @property
    def row_items(self) -> np.ndarray:
        return self.dsi.row_items

    def weight(self) -> torch.Tensor:
        return self.dsi.weight()

    def embed_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        enc = self.dsi.encoder
        hidden, mask = enc.lower(texts)
        prompts, pull = self.pool(enc.query_features(hidden, mask))
        emb = masked_mean(enc.upper(hidden, mask, prompts), mask)
        return F.normalize(emb, dim=-1), (self.pull_weight * pull if self.pool.learn_keys else None)
