"""Token layout of semantic IDs: per-level offsets into the model's vocabulary.

The code ``c`` of level ``l`` is the token ``base + offset[l] + c`` with ``offset[l] = K_0 + ... + K_{l-1}``, so
every level owns a contiguous block of ``K_l`` tokens and the ``base`` tokens below them stay free for specials
(PAD, EOS, BOS, a decoder start token). Level-specific tokens are what TIGER uses; they make the per-level masks
a slice of the vocabulary instead of a scatter over shared code tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genir.errors import IndexFormatError


@dataclass(frozen=True)
class CodeTokenLayout:
    """Where each level's codes sit in the vocabulary.

    Args:
        level_sizes: codebook size ``K_l`` of every level.
        base: number of tokens before the first code token (special tokens).
    """

    level_sizes: tuple[int, ...]
    base: int = 0

    def __init__(self, level_sizes: Sequence[int], base: int = 0):
        sizes = tuple(int(k) for k in level_sizes)
        if not sizes or any(k < 1 for k in sizes):
            raise IndexFormatError(
                f"level_sizes must be a non-empty list of positive ints, got {list(level_sizes)}"
            )
        if int(base) < 0:
            raise IndexFormatError(f"token base must be >= 0, got {base}")
        object.__setattr__(self, "level_sizes", sizes)
        object.__setattr__(self, "base", int(base))

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First token of every level (``base`` included)."""
        starts = np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]) + self.base
        return tuple(int(s) for s in starts)

    @property
    def vocab_end(self) -> int:
        """One past the last code token: the model's vocabulary must have at least this many entries."""
        return self.base + sum(self.level_sizes)

    def token_range(self, level: int) -> tuple[int, int]:
        """``(start, stop)`` of level ``level``'s block of tokens."""
        start = self.offsets[level]
        return start, start + self.level_sizes[level]

    def to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., l)`` of the first ``l`` levels -> token ids of the same shape."""
        l = codes.shape[-1]
        offsets = torch.tensor(self.offsets[:l], dtype=torch.long, device=codes.device)
        return codes.long() + offsets

    def to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``(..., l)`` of the first ``l`` levels -> codes; ``-1`` where a token is not a code of its
        level."""
        l = tokens.shape[-1]
        offsets = torch.tensor(self.offsets[:l], dtype=torch.long, device=tokens.device)
        sizes = torch.tensor(self.level_sizes[:l], dtype=torch.long, device=tokens.device)
        codes = tokens.long() - offsets
        return torch.where((codes >= 0) & (codes < sizes), codes, torch.full_like(codes, -1))
