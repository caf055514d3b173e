"""Dropout whose CPU masks cost a quarter of the random numbers of :func:`torch.nn.functional.dropout`.

On the CPU, torch draws every dropout mask element from its Mersenne-Twister generator (~3 ns each, about 60
times the cost of the multiply that applies the mask); the profiler put dropout at a quarter of a one-thread MMGRec
training step. Here each random 32-bit integer gives four mask bytes: an element is kept when its byte is
>= ``round(p * 256)``, so the drop probability is ``p`` rounded to a multiple of 1/256 (0.1 -> 0.1016, 0.2 ->
0.1992) and kept values are scaled by ``1 / (1 - that)`` to keep the expectation. Measured on one thread
(``benchmarks/dropout_cpu.py``): masks 1.9-2.6x faster, training steps 1.12x (MMGRec) and 1.17x (TIGER) faster.
On other devices (CUDA's Philox generator is fast) and for a ``p`` that rounds to 0 or 1 it is exactly
``F.dropout``. The masks come from torch's global generator, so ``torch.manual_seed`` makes runs reproducible
as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_INT32 = torch.iinfo(torch.int32)


def byte_threshold(p: float) -> int:
    """Bytes below this value are dropped: ``round(p * 256)``."""
    return round(p * 256)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with CPU masks built from random bytes (module docstring)."""
    if not training or p == 0.0:
        return x
    threshold = byte_threshold(p)
    if x.device.type != "cpu" or not 0 < threshold < 256 or not x.is_floating_point():
        return F.dropout(x, p, training)
    n = x.numel()
    words = torch.randint(_INT32.min, _INT32.max, (math.ceil(n / 4),), dtype=torch.int32)
    keep = words.view(torch.uint8)[:n].view(x.shape) >= threshold
    return x * keep * (256.0 / (256 - threshold))


class Dropout(nn.Module):
    """:class:`torch.nn.Dropout` on :func:`dropout`."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
