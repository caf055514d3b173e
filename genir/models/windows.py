"""Training windows cut from users' time-ordered histories, for sequence models (SASRec, the generative
transformer of TIGER and MMGRec)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset


class SequenceWindows(TorchDataset):
    """Training windows: (input ids, target ids), both of length ``max_len``, left-padded with ``pad_id``."""

    def __init__(self, histories: list[np.ndarray], max_len: int, pad_id: int):
        self.max_len = max_len
        self.pad_id = pad_id
        windows, owners = [], []
        for owner, seq in enumerate(histories):
            end = len(seq)
            while end >= 2:
                start = max(0, end - max_len - 1)
                windows.append(seq[start:end])
                owners.append(owner)
                end = start + 1  # the window's first item is the next window's last target
                if start == 0:
                    break
        self.windows = windows
        self.owners = owners  # index in ``histories`` (the user) of each window

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, idx):
        return self.window(idx)

    def window(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.windows[idx]
        inp = np.full(self.max_len, self.pad_id, dtype=np.int64)
        tgt = np.full(self.max_len, self.pad_id, dtype=np.int64)
        n = len(w) - 1
        inp[self.max_len - n:] = w[:-1]
        tgt[self.max_len - n:] = w[1:]
        return torch.from_numpy(inp), torch.from_numpy(tgt)


class UserWindows(SequenceWindows):
    """:class:`SequenceWindows` with the owner (user) of each: ``(user, inputs (T,), targets (T,))``."""

    def __getitem__(self, idx):
        return (self.owners[idx], *self.window(idx))
