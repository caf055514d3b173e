"""Token layout of semantic IDs: where each level's codes sit in the model's vocabulary.

Two layouts, and the model decides which one is right (it was trained with one of them):

* **per-level** (default, TIGER): the code ``c`` of level ``l`` is the token ``base + offset[l] + c`` with
  ``offset[l] = K_0 + ... + K_{l-1}``, so every level owns a contiguous block of ``K_l`` tokens. Level-specific
  tokens make the per-level masks a slice of the vocabulary instead of a scatter over shared code tokens.
* **shared** (``shared=True``, one codebook for all levels, e.g. AVG's image vokens or an RQ-VAE with
  ``shared_codebook``): the code ``c`` of every level is the token ``base + c``; all levels read the one block of
  ``max(K_l)`` tokens from ``base``, level ``l`` its first ``K_l`` of them.

In both the ``base`` tokens below the codes stay free for specials (PAD, EOS, BOS, a decoder start token).

A layout that does not match the model is only detectable when the model's vocabulary is too small for it (the
decoder then raises, and says when ``shared=True`` would fit). A per-level layout applied to a shared-code model
with a large enough vocabulary (or the reverse) decodes the wrong tokens SILENTLY: the scores look like
log-probabilities but are read from the wrong columns. Choose ``shared`` from how the model was trained.
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
        shared: one block of ``max(K_l)`` code tokens for all levels (token ``base + c`` at every level) instead
            of one block per level. Must match how the model was trained; see the module docstring.
    """

    level_sizes: tuple[int, ...]
    base: int = 0
    shared: bool = False

    def __init__(self, level_sizes: Sequence[int], base: int = 0, shared: bool = False):
        sizes = tuple(int(k) for k in level_sizes)
        if not sizes or any(k < 1 for k in sizes):
            raise IndexFormatError(
                f"level_sizes must be a non-empty list of positive ints, got {list(level_sizes)}"
            )
        if int(base) < 0:
            raise IndexFormatError(f"token base must be >= 0, got {base}")
        if not isinstance(shared, (bool, np.bool_)):
            raise TypeError(f"shared must be a bool, got {shared!r}")
        object.__setattr__(self, "level_sizes", sizes)
        object.__setattr__(self, "base", int(base))
        object.__setattr__(self, "shared", bool(shared))

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """First token of every level (``base`` included); all ``base`` in a shared layout."""
        if self.shared:
            return (self.base,) * self.num_levels
        starts = np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]) + self.base
        return tuple(int(s) for s in starts)

    @property
    def vocab_end(self) -> int:
        """One past the last code token: the model's vocabulary must have at least this many entries."""
        return self.base + (max(self.level_sizes) if self.shared else sum(self.level_sizes))

    def token_range(self, level: int) -> tuple[int, int]:
        """``(start, stop)`` of level ``level``'s tokens; in a shared layout ``(base, base + K_level)``, the part
        of the shared block that level ``level`` uses."""
        start = self.offsets[level]
        return start, start + self.level_sizes[level]

    def to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(..., l)`` of the first ``l`` levels -> token ids of the same shape."""
        l = codes.shape[-1]
        offsets = torch.tensor(self.offsets[:l], dtype=torch.long, device=codes.device)
        return codes.long() + offsets

    def to_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``(..., l)`` of the first ``l`` levels -> codes; ``-1`` where a token is not a code of its
        level (in a shared layout: also a code token ``>= base + K_l`` of a level smaller than the block)."""
        l = tokens.shape[-1]
        offsets = torch.tensor(self.offsets[:l], dtype=torch.long, device=tokens.device)
        sizes = torch.tensor(self.level_sizes[:l], dtype=torch.long, device=tokens.device)
        codes = tokens.long() - offsets
        return torch.where((codes >= 0) & (codes < sizes), codes, torch.full_like(codes, -1))

    def check_vocab_size(self, vocab_size: int) -> None:
        """Raise ValueError, saying what is wrong and what to change, when a model with ``vocab_size`` tokens
        cannot hold this layout's code tokens. A vocabulary large enough proves nothing about the layout being
        the model's: a wrong layout that fits decodes wrong tokens silently (see the module docstring)."""
        vocab_size = int(vocab_size)
        if vocab_size >= self.vocab_end:
            return
        text = (
            f"the model's logits have V={vocab_size} columns but the token layout needs V >= {self.vocab_end}: "
            f"{self.describe()} puts code tokens past the model's vocabulary"
        )
        if not self.shared and self.fits_shared(vocab_size):
            raise ValueError(
                f"{text}. A per-level layout gives every level its own block of tokens ({sum(self.level_sizes)} "
                f"code tokens in all); V={vocab_size} only has room for ONE block of {max(self.level_sizes)} code "
                "tokens shared by all levels. If the model shares its code tokens across levels (one codebook, "
                f"token = base + code at every level), use CodeTokenLayout({list(self.level_sizes)}, "
                f"base={self.base}, shared=True) (or shared=True in the decoding helper)"
            )
        raise ValueError(f"{text}; the vocabulary is too small for these IDs (check level_sizes and base)")

    def fits_shared(self, vocab_size: int) -> bool:
        """Whether a shared layout with the same sizes and base would fit a vocabulary of ``vocab_size`` tokens."""
        return self.base + max(self.level_sizes) <= int(vocab_size)

    def describe(self) -> str:
        """Short text of the token blocks, for error messages."""
        blocks = ", ".join(f"[{a}, {b})" for a, b in (self.token_range(l) for l in range(self.num_levels)))
        kind = "one shared block" if self.shared else "one block per level"
        return (
            f"CodeTokenLayout(level_sizes={list(self.level_sizes)}, base={self.base}, shared={self.shared}) "
            f"({kind}; level tokens {blocks})"
        )


def resolve_layout(
    layout: CodeTokenLayout | None, level_sizes: Sequence[int] | None, shared: bool | None, where: str
) -> CodeTokenLayout:
    """The layout a public helper uses: ``layout`` if given, else ``CodeTokenLayout(level_sizes, 0, shared)``.

    ``shared`` is None (take the layout's, or per-level when building one) or an explicit bool, which must then
    agree with a given ``layout``: a helper never silently decodes with a layout the caller did not ask for.
    """
    if layout is not None:
        if shared is not None and bool(shared) != layout.shared:
            raise ValueError(
                f"{where}: shared={shared} contradicts the given layout ({layout.describe()}); pass one or the "
                "other, or make them agree"
            )
        return layout
    if level_sizes is None:
        raise ValueError(f"{where}: pass a layout (no index to take the level sizes from)")
    return CodeTokenLayout(level_sizes, shared=bool(shared) if shared is not None else False)
