"""DSI with atomic docids: the encoder's pooled text embedding scored against one classifier row per document.

This is the BERT-based DSI of IncDSI and PromptDSI (a [CLS]-style query embedding and a linear layer with a row per
docid), trained on indexing pairs (document text -> its docid) and retrieval pairs (query -> docid) together with
cross-entropy over all docids by the project's one Trainer.

Rows come in *blocks*, one per corpus step (D0, D1, ...), so an incremental step adds a block and freezes the old
ones (PromptDSI: old classifier rows are frozen) or not (sequential fine-tuning). Query embeddings are L2-normalised
and a row's norm acts as its inverse temperature; rows start as the normalised pretrained embedding of their
document, scaled by ``scale`` (a deviation: DSI starts rows at random; this start makes the few CPU epochs count and
is the same for every method compared).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from genir.eval.retrieval import RankedLists
from genir.methods.dsi.encoder import CachedEncoder


class TextPairs(TorchDataset):
    """(text, item) training pairs."""

    def __init__(self, texts: list[str], items: np.ndarray):
        self.texts = list(texts)
        self.items = np.asarray(items, dtype=np.int64)

    @classmethod
    def from_frame(cls, pairs) -> TextPairs:
        return cls(pairs["text"].astype(str).tolist(), pairs["item"].to_numpy())

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i):
        return self.texts[i], int(self.items[i])


def collate_pairs(rows):
    texts, items = zip(*rows)
    return list(texts), torch.tensor(items, dtype=torch.long)


def texts_allowed(batch) -> tuple[list[str], torch.Tensor | None]:
    """The texts of a :class:`~genir.data.tasks.QueryBatch` (or a plain list of strings) and its allowed-document
    mask (None for a list: every document may be returned)."""
    if isinstance(batch, (list, tuple)):
        return list(batch), None
    return list(batch.texts), batch.allowed


class TextPairsModel(nn.Module, metaclass=ABCMeta):
    """The Trainer's contract of a model trained on (text, document) pairs: the dataset, collate, ``forward`` =
    :meth:`loss`, and no evaluation cache. Atomic and semantic DSI both train this way."""

    def train_dataset(self, task) -> TorchDataset:
        return TextPairs.from_frame(task.train_pairs)

    collate = staticmethod(collate_pairs)

    @abstractmethod
    def loss(self, batch):
        """The training loss of a (texts, items) batch (a tensor, or a dict with ``loss``)."""

    def forward(self, batch):
        return self.loss(batch)

    def prepare_eval(self) -> None:
        """Nothing to precompute."""


class RowScorer(TextPairsModel):
    """What every atomic-docid model shares: normalised query embeddings against classifier rows, cross-entropy
    over the rows and dense scores over catalogue ids. Subclasses give :meth:`embed_queries` (embeddings and an
    auxiliary loss) and the rows."""

    num_items: int

    @abstractmethod
    def embed_queries(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, H) normalised query embeddings and an auxiliary loss (or None)."""

    @abstractmethod
    def weight(self) -> torch.Tensor:
        """(rows, H) classifier rows in score units."""

    @property
    @abstractmethod
    def row_items(self) -> np.ndarray:
        """Catalogue id of each row."""

    def _row_of(self, items: torch.Tensor) -> torch.Tensor:
        lookup = torch.full((self.num_items,), -1, dtype=torch.long)
        lookup[torch.as_tensor(self.row_items)] = torch.arange(len(self.row_items))
        rows = lookup[items.cpu()]
        if (rows < 0).any():
            raise ValueError(f"{type(self).__name__}: a training pair names a document that has no classifier row")
        return rows.to(self.weight().device)

    def scores(self, texts: list[str]) -> torch.Tensor:
        """(B, num_items) scores over catalogue ids; ids without a row get ``-inf``."""
        s = self.embed_queries(texts)[0] @ self.weight().T
        out = torch.full((s.shape[0], self.num_items), float("-inf"), device=s.device, dtype=s.dtype)
        out[:, torch.as_tensor(self.row_items, device=s.device)] = s
        return out

    def loss(self, batch):
        texts, items = batch
        emb, aux = self.embed_queries(texts)
        ce = F.cross_entropy(emb @ self.weight().T, self._row_of(items))
        if aux is None:
            return ce
        return {"loss": ce + aux, "ce": ce.detach(), "aux": aux.detach()}

    @torch.no_grad()
    def retrieve(self, batch, k: int = 10) -> RankedLists:
        """Top-``k`` documents of each query (a :class:`~genir.data.tasks.QueryBatch` or a list of strings)."""
        texts, allowed = texts_allowed(batch)
        return RankedLists.from_scores(self.scores(texts), k, allowed)


class AtomicDSI(RowScorer):
    """Encoder + per-document classifier rows.

    Args:
        encoder: a :class:`CachedEncoder` (its upper layers train unless frozen by the caller).
        rows: (N0, H) initial rows of the first block (D0's documents, in the order of ``items``), unit-scale
            (e.g. normalised document embeddings).
        items: catalogue ids of those rows; a later block adds more (:meth:`add_block`). Scores are returned over
            catalogue ids ``0 .. num_items - 1``; catalogue ids without a row score ``-inf``.
        num_items: size of the catalogue (every step's documents).
        scale: scores are ``scale * row . normalise(query)``: the stored rows stay unit-scale, so one learning
            rate suits them and the encoder's layers, and ``scale`` is the inverse softmax temperature at the start.
        encoder_lr: the encoder's learning rate as a multiple of the trainer's (a gentle fine-tune).
    """

    def __init__(self, encoder: CachedEncoder, rows: torch.Tensor, items: np.ndarray, num_items: int, *,
                 scale: float = 20.0, encoder_lr: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.scale = float(scale)
        self.blocks = nn.ParameterList([nn.Parameter(rows.float().clone())])
        self.block_items: list[np.ndarray] = [np.asarray(items, dtype=np.int64)]
        self.num_items = int(num_items)
        self.lr_multipliers = {"encoder.": encoder_lr}

    def add_block(self, rows: torch.Tensor, items: np.ndarray, freeze_old: bool = True) -> None:
        """Rows for new documents (an incremental step); the old blocks stop training when ``freeze_old``. The
        catalogue grows to cover ``items`` if they lie beyond it (documents added to an index)."""
        if freeze_old:
            for block in self.blocks:
                block.requires_grad_(False)
        device = self.blocks[0].device
        self.blocks.append(nn.Parameter(rows.float().clone().to(device)))
        self.block_items.append(np.asarray(items, dtype=np.int64))
        self.num_items = max(self.num_items, int(self.block_items[-1].max()) + 1 if len(items) else 0)

    @property
    def row_items(self) -> np.ndarray:
        return np.concatenate(self.block_items)

    def weight(self) -> torch.Tensor:
        """(rows, H) classifier rows in score units (the stored rows are unit-scale; see the class docstring)."""
        return self.scale * torch.cat(list(self.blocks), dim=0)

    def embed_queries(self, texts: list[str]) -> tuple[torch.Tensor, None]:
        return F.normalize(self.encoder(texts), dim=-1), None
