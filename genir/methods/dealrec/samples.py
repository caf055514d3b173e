"""DEALRec's training samples: (recent history -> next item) pairs cut from the users' training sequences.

Every training interaction after a user's first is one sample; its history is the up to ``max_history`` items
before it. DEALRec scores and prunes these samples, and the LLM recommender is fine-tuned on the kept ones. On a
CPU the whole set (about 98k samples on ml-100k) is too many to score with an LLM, so a fixed, seeded pool is drawn
first and pruning happens inside it (a deviation from the paper, which scores every training sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SamplePool:
    """``users[i]`` read ``histories[i]`` (item ids, oldest first) and then ``targets[i]``."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> SamplePool:
        rows = np.asarray(rows, dtype=np.int64)
        return SamplePool(self.users[rows], [self.histories[i] for i in rows], self.targets[rows])

    def padded(self, length: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Histories as a (N, length) tensor, right-aligned and left-padded with ``pad_id`` (the layout of the
        project's sequence models), and the (N,) targets."""
        out = np.full((len(self), length), pad_id, dtype=np.int64)
        for i, h in enumerate(self.histories):
            h = h[-length:]
            if len(h):
                out[i, length - len(h):] = h
        return torch.from_numpy(out), torch.from_numpy(self.targets.astype(np.int64))


def training_samples(histories: list[np.ndarray], max_history: int = 10) -> SamplePool:
    """Every (previous up to ``max_history`` items -> item) pair of the per-user training ``histories``."""
    users, hists, targets = [], [], []
    for user, seq in enumerate(histories):
        seq = np.asarray(seq)
        for t in range(1, len(seq)):
            users.append(user)
            hists.append(seq[max(0, t - max_history):t].copy())
            targets.append(int(seq[t]))
    return SamplePool(np.asarray(users, dtype=np.int64), hists, np.asarray(targets, dtype=np.int64))


def draw_pool(samples: SamplePool, size: int, seed: int) -> SamplePool:
    """A seeded uniform sample of ``size`` samples (all of them when there are fewer), in their original order."""
    if size >= len(samples):
        return samples
    rows = np.sort(np.random.default_rng(seed).choice(len(samples), size=size, replace=False))
    return samples.subset(rows)
