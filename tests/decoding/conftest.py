"""Tiny catalogues and step models built in-process for the decoding tests."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn


def random_catalogue(rng: np.random.Generator, level_sizes, n: int) -> np.ndarray:
    """``n`` distinct random IDs (rows) of the given level sizes, in random order."""
    space = np.array(list(itertools.product(*[range(k) for k in level_sizes])), dtype=np.int64)
    return space[rng.choice(len(space), size=min(n, len(space)), replace=False)]


def trie_children(codes: np.ndarray, prefix: tuple[int, ...]) -> set[int]:
    """Brute force: the codes that follow ``prefix`` in some row."""
    l = len(prefix)
    return {int(row[l]) for row in codes if tuple(int(c) for c in row[:l]) == prefix}


class TinyGRUStep(nn.Module):
    """A random GRU language model over the layout's vocabulary with an explicit cache.

    The cache is ``(hidden (R, H), seen (R, l))``: ``seen`` are the tokens this cache has consumed, and every
    call asserts they equal the prefix the search passes, so a wrong ``reorder_cache`` fails loudly.
    ``init_state(B)`` conditions each query on its own random start vector.
    """

    def __init__(self, vocab_size: int, hidden: int = 16, seed: int = 0, dtype=torch.float64, blocked=()):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Parameter(torch.randn(vocab_size, hidden, generator=g, dtype=dtype))
        self.cell = nn.GRUCell(hidden, hidden, dtype=dtype)
        for p in self.cell.parameters():
            p.data = torch.randn(p.shape, generator=g, dtype=dtype)
        self.head = nn.Parameter(torch.randn(hidden, vocab_size, generator=g, dtype=dtype) * 2)
        self.query = torch.randn(64, hidden, generator=g, dtype=dtype)
        self.blocked = list(blocked)  # tokens that always get logit -inf
        self.calls = 0

    def init_state(self, batch_size: int):
        return (self.query[:batch_size].clone(), torch.empty(batch_size, 0, dtype=torch.long))

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, cache):
        hidden, seen = cache
        assert torch.equal(seen, tokens[:, :-1] if tokens.shape[1] else seen), "cache out of sync with prefix"
        if tokens.shape[1]:
            hidden = self.cell(self.embed[tokens[:, -1]], hidden)
        logits = torch.tanh(hidden) @ self.head
        logits[:, self.blocked] = float("-inf")
        self.calls += 1
        return logits, (hidden, tokens)

    @staticmethod
    def reorder_cache(cache, rows):
        hidden, seen = cache
        return hidden[rows], seen[rows]


class BagStep:
    """A cache-less step model: logits from a position-weighted bag of the prefix's token embeddings."""

    def __init__(self, vocab_size: int, batch_size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.randn(vocab_size, 8, generator=g, dtype=torch.float64)
        self.head = torch.randn(8, vocab_size, generator=g, dtype=torch.float64) * 3
        self.query = torch.randn(batch_size, 8, generator=g, dtype=torch.float64)

    def init_state(self):
        return torch.arange(self.query.shape[0])  # the query of every row

    def __call__(self, tokens, rows_query):
        h = self.query[rows_query].clone()
        for j in range(tokens.shape[1]):
            h = h + (j + 1) * self.embed[tokens[:, j]]
        return torch.sin(h) @ self.head, rows_query

    @staticmethod
    def reorder_cache(rows_query, rows):
        return rows_query[rows]
