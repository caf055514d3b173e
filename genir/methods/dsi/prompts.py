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
* **Old-row guard (not in the paper; off unless ``row_guard`` > 0).** D0's forgetting comes from the new rows
  outscoring old documents on old queries (``benchmarks/promptdsi_forgetting.py``), which a step that sees only new
  queries cannot notice. The guard uses what the frozen model already holds, no stored query or document: each old
  row's direction stands in for its documents' queries, and a hinge keeps every new row's score there below that
  old row's own by ``guard_margin``, IncDSI's constraint with the old rows instead of IncDSI's cache of old query
  embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genir.methods.dsi.atomic import AtomicDSI, RowScorer
from genir.methods.dsi.encoder import masked_mean
from genir.models.prompt_pool import PromptPool


def topic_keys(features: np.ndarray, n_topics: int, seed: int = 0) -> np.ndarray:
    """(n_topics, H) k-means centroids of (N, H) features (cosine: features normalised first)."""
    import faiss

    x = np.ascontiguousarray(features, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    km = faiss.Kmeans(x.shape[1], int(n_topics), niter=25, seed=int(seed), spherical=True, verbose=False)
    km.train(x)
    return km.centroids.copy()


class PromptedDSI(RowScorer):
    """A frozen :class:`AtomicDSI` whose query encoding takes prompts from a pool; only the pool and the rows the
    caller leaves trainable (the new block) train. ``pull_weight`` scales L2P's key loss (ignored with fixed
    keys)."""

    def __init__(self, dsi: AtomicDSI, pool: PromptPool, pull_weight: float = 0.1, row_guard: float = 0.0,
                 guard_margin: float = 1.0):
        super().__init__()
        self.dsi = dsi
        self.pool = pool
        self.pull_weight = pull_weight
        self.row_guard = float(row_guard)
        self.guard_margin = float(guard_margin)
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
        aux = self.pull_weight * pull if self.pool.learn_keys else None
        if self.training and self.row_guard > 0:
            guard = self.row_guard * self.guard_loss()
            aux = guard if aux is None else aux + guard
        return F.normalize(emb, dim=-1), aux

    def guard_loss(self) -> torch.Tensor:
        """Mean over old rows of the summed hinge ``relu(w_new . u_old - w_old . u_old + margin)``, with
        ``u_old`` the old row's unit direction (score units); zero before the first step."""
        blocks = list(self.dsi.blocks)
        if len(blocks) < 2:
            return blocks[0].new_zeros(())
        scale = self.dsi.scale
        old = torch.cat(blocks[:-1]).detach()
        unit = F.normalize(old, dim=-1)
        own = scale * old.norm(dim=-1)  # w_old . u_old in score units
        stolen = scale * (unit @ blocks[-1].T) - own[:, None] + self.guard_margin  # (old, new)
        return torch.relu(stolen).sum(1).mean()
