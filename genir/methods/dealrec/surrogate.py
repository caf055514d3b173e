"""The surrogate recommender DEALRec scores samples with: the project's SASRec, asked for one sample's loss.

``SurrogateLosses(model, pool)`` is the per-sample loss function every scorer in
:mod:`genir.methods.dealrec.scores` takes: rows of the pool in, (B,) cross-entropy of the next item over all items
out, the history right-aligned in SASRec's window as at evaluation. ``INFLUENCE_PARAMETER`` is the matrix DEALRec
restricts the influence to (the attention output projection of SASRec's second block)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from genir.methods.dealrec.samples import SamplePool
from genir.methods.sasrec import SASRec

INFLUENCE_PARAMETER = "encoder.layers.1.self_attn.out_proj.weight"


class SurrogateLosses:
    """Per-sample losses (and logits) of a trained SASRec on the samples of ``pool``. The model is put in eval mode
    (dropout off, so scores are deterministic); its parameters keep ``requires_grad``."""

    def __init__(self, model: SASRec, pool: SamplePool):
        self.model = model.eval()
        self.inputs, self.targets = pool.padded(model.config.max_seq_length, model.pad_id)

    def logits(self, rows: np.ndarray) -> torch.Tensor:
        rows = torch.as_tensor(rows)
        h = self.model.encode(self.inputs[rows])[:, -1]
        return h @ self.model.item_emb.weight[: self.model.num_items].T

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        return F.cross_entropy(self.logits(rows), self.targets[torch.as_tensor(rows)], reduction="none")

    def last_block_linears(self) -> list[torch.nn.Linear]:
        """The feed-forward ``nn.Linear`` layers of the last block (GraNd's gradient-norm scope here)."""
        last = self.model.encoder.layers[-1]
        return [last.linear1, last.linear2]
