"""Torch datasets of training examples that are fetched a whole batch at a time."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


class BatchedTensorDataset(TensorDataset):
    """A TensorDataset that the DataLoader indexes once per batch (``__getitems__``) instead of once per row:
    for the ~100k tiny (user, item) pairs of a BPR epoch, per-row fetching and collating cost 3x the model's time.
    Returns the batch already collated, so the loader must use :func:`passthrough_collate`."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def passthrough_collate(batch):
    return batch
