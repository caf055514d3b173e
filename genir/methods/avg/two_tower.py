"""A LiT-style two-tower text-image model ("locked image tuning", Zhai et al., CVPR 2022), sized for a CPU: the
image tower is a frozen pretrained image encoder (its features cached) with a trained head, the text tower the
frozen pretrained MiniLM sentence encoder with a trained head; both heads map into one joint space, trained with
the symmetric InfoNCE loss and a learned temperature on (caption, image) training pairs.

It is the baseline a user would pick (retrieval = nearest images by cosine, FAISS inner product over the image
embeddings) and the source of the aligned image and caption features that AVG's voken tokenizer needs (AVG uses
CLIP's). Deviation from LiT: the text tower is frozen and only a head on top of it is trained (LiT trains the
whole text tower); on 2 CPU cores that keeps a training epoch to seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset


def _head(d_in: int, hidden: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class _PairRows(TorchDataset):
    def __init__(self, text_rows: np.ndarray, items: np.ndarray):
        self.text_rows, self.items = text_rows, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return int(self.text_rows[i]), int(self.items[i])


class TwoTower(nn.Module):
    """Trained heads over frozen features. ``image_features`` (N, d_img) of every catalogue image and
    ``text_bank`` (T, d_txt) of every known caption (``texts``: its strings) are buffers; a text that is not in
    the bank is embedded by ``text_encoder`` (a callable list[str] -> (n, d_txt)) when one is given."""

    def __init__(self, image_features: np.ndarray, text_bank: np.ndarray, texts: list[str], dim: int = 256,
                 hidden: int = 512, text_encoder=None):
        super().__init__()
        self.register_buffer("image_features", torch.as_tensor(image_features, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("text_bank", torch.as_tensor(text_bank, dtype=torch.float32), persistent=False)
        self.row_of = {t: i for i, t in enumerate(texts)}
        self.image_head = _head(self.image_features.shape[1], hidden, dim)
        self.text_head = _head(self.text_bank.shape[1], hidden, dim)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))  # CLIP's initial temperature
        self.mean = nn.Parameter(self.image_features.mean(0), requires_grad=False)
        self.std = nn.Parameter(self.image_features.std(0).clamp_min(1e-6), requires_grad=False)
        self.text_encoder = text_encoder
        self._index = None

    @property
    def num_items(self) -> int:
        return self.image_features.shape[0]

    # -- towers ----------------------------------------------------------------------------------------------
    def embed_images(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        x = self.image_features if rows is None else self.image_features[rows]
        return F.normalize(self.image_head((x - self.mean) / self.std), dim=-1)  # (n, dim)

    def embed_text_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(self.text_bank[rows]), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        rows = [self.row_of.get(t) for t in texts]
        raw = torch.zeros(len(texts), self.text_bank.shape[1], device=self.text_bank.device)
        known = [i for i, r in enumerate(rows) if r is not None]
        if known:
            raw[known] = self.text_bank[[rows[i] for i in known]]
        new = [i for i, r in enumerate(rows) if r is None]
        if new:
            if self.text_encoder is None:
                raise KeyError(f"two-tower: no text encoder for unseen text {texts[new[0]]!r}")
            raw[new] = torch.as_tensor(self.text_encoder([texts[i] for i in new]), dtype=torch.float32,
                                       device=raw.device)
        return F.normalize(self.text_head(raw), dim=-1)

    # -- training (the one Trainer) ------------------------------------------------------------------------
    def train_dataset(self, task) -> TorchDataset:
        pairs = task.train_pairs
        return _PairRows(np.array([self.row_of[t] for t in pairs["text"]]), pairs["item"].to_numpy())

    def loss(self, batch) -> torch.Tensor:
        text_rows, items = batch
        self._index = None
        t = self.embed_text_rows(text_rows)  # (B, dim)
        v = self.embed_images(items)  # (B, dim)
        logits = self.log_scale.exp().clamp(max=100) * t @ v.T  # (B, B)
        # captions of one image (or of identical images) in one batch are not negatives of each other
        same = items[:, None] == items[None, :]
        target = torch.arange(len(items), device=logits.device)
        masked = logits.masked_fill(same & ~torch.eye(len(items), dtype=torch.bool, device=logits.device),
                                    float("-inf"))
        return 0.5 * (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target))

    def forward(self, batch) -> torch.Tensor:
        return self.loss(batch)

    # -- retrieval (FAISS inner product over the image embeddings) ----------------------------------------
    def prepare_eval(self) -> None:
        import faiss

        with torch.no_grad():
            emb = self.embed_images().cpu().numpy().astype(np.float32)
        index = faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        self._index = index

    @torch.no_grad()
    def retrieve(self, batch, k: int = 10):
        from genir.eval.retrieval import RankedLists

        texts = batch if isinstance(batch, (list, tuple)) else batch.texts
        if self._index is None:
            self.prepare_eval()
        q = self.embed_texts(list(texts)).cpu().numpy().astype(np.float32)
        scores, items = self._index.search(q, min(k, self.num_items))
        return RankedLists(torch.from_numpy(items.astype(np.int64)), torch.from_numpy(scores))

    def train(self, mode: bool = True):
        self._index = None
        return super().train(mode)

    def index_bytes(self) -> int:
        if self._index is None:
            self.prepare_eval()
        return int(self._index.ntotal * self._index.d * 4)
