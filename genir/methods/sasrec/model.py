"""SASRec: learned item + position embeddings, a causal Transformer encoder (torch's), item logits by the dot
product with the (tied) item embedding table.

Training uses every position of a sequence at once: each training sequence is cut, from its end, into windows
of ``max_seq_length + 1`` items that overlap by one item (so every training interaction after the first is a
target exactly once), and the loss is cross-entropy over all items at every position. This is the original
SASRec's all-positions objective with a full softmax (as in RecBole's ``loss_type=CE``), but unlike RecBole it
does not build one example per prefix, which makes an epoch about ``avg_len`` times cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from genir.data.split import Split
from genir.eval.evaluator import EvalBatch
from genir.models.base import MethodConfig, Recommender, normal_init
from genir.models.windows import SequenceWindows


@dataclass
class SASRecConfig(MethodConfig):
    hidden_size: int = 64  # RecBole's defaults for the architecture
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5  # hidden and attention dropout
    max_seq_length: int = 50
    layer_norm_eps: float = 1e-12


class SASRec(Recommender):
    config_class = SASRecConfig
    # lr tuned on ml-100k validation (recipes/tune_baselines.py)
    trainer_defaults: ClassVar[dict] = {"lr": 2e-3, "batch_size": 128, "epochs": 200, "patience": 10}

    def __init__(self, config: SASRecConfig, split: Split):
        super().__init__(config, split)
        c = config
        self.pad_id = split.num_items
        self.item_emb = nn.Embedding(split.num_items + 1, c.hidden_size, padding_idx=self.pad_id)
        self.pos_emb = nn.Embedding(c.max_seq_length, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            c.hidden_size, c.n_heads, c.inner_size, c.dropout, activation="gelu", batch_first=True,
            layer_norm_eps=c.layer_norm_eps,
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        causal = torch.triu(torch.ones(c.max_seq_length, c.max_seq_length, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)
        self.apply(normal_init)

    def train_dataset(self, split: Split) -> TorchDataset:
        return SequenceWindows(split.histories(None), self.config.max_seq_length, self.pad_id)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) right-aligned item ids, left-padded -> (B, T, D) hidden states (T <= max_seq_length)."""
        _B, T = seq.shape
        pos = torch.arange(T, device=seq.device)
        h = self.item_emb(seq) + self.pos_emb(pos)
        h = self.dropout(self.norm(h))
        # causal mask plus padded keys; every position may attend to itself, so no row is fully masked (a fully
        # masked row gives NaNs that 0-weights would still spread). Pad positions are never read.
        mask = self.causal_mask[:T, :T].unsqueeze(0) | (seq == self.pad_id).unsqueeze(1)  # (B, T, T)
        mask = mask & ~torch.eye(T, dtype=torch.bool, device=seq.device)
        mask = mask.repeat_interleave(self.config.n_heads, dim=0)  # (B * heads, T, T)
        return self.encoder(h, mask=mask)

    def loss(self, batch) -> torch.Tensor:
        inp, tgt = batch
        h = self.encode(inp)  # (B, T, D)
        keep = tgt != self.pad_id
        logits = h[keep] @ self.item_emb.weight[: self.num_items].T  # (N, I)
        return F.cross_entropy(logits, tgt[keep])

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        L = self.config.max_seq_length
        seq = batch.history[:, -L:]
        if seq.shape[1] < L:  # positions are counted from the right end, as in training windows
            seq = F.pad(seq, (L - seq.shape[1], 0), value=self.pad_id)
        h = self.encode(seq)[:, -1]  # right-aligned: the last position is the most recent item
        return h @ self.item_emb.weight[: self.num_items].T
