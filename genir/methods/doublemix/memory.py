"""Double Mixture's mixture of memory: what is replayed beside task i's training data.

* **Replay**: from each earlier task j, ``round(replay_ratio * |D_i|)`` random training samples (all of D_j when
  it has fewer), drawn afresh for every task (the paper samples per task; it keeps no fixed buffer).
* **Hybrid memory**: for every hybrid pair (a speech task, a sound task) whose two tasks have both been seen by
  the end of task i, ``round(hybrid_replay_ratio * replay_ratio * |D_i|)`` of the pair's mixed (join / overlay)
  training samples. They teach the decoder to report a semantic and an acoustic event of one clip.
"""

from __future__ import annotations

import numpy as np


def replay_indices(current_size: int, earlier_sizes: dict[str, int], ratio: float,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Row indices to replay from each earlier task (sorted), ``round(ratio * current_size)`` each at most."""
    n = round(ratio * current_size)
    return {task: np.sort(rng.choice(size, min(n, size), replace=False)) if n > 0 and size > 0
            else np.zeros(0, dtype=np.int64) for task, size in earlier_sizes.items()}


def hybrid_indices(current_size: int, seen: set[str], pair_sizes: dict[tuple[str, str], int], ratio: float,
                   hybrid_ratio: float, rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    """Row indices of the mixed samples of every hybrid pair whose two tasks are in ``seen``."""
    n = round(hybrid_ratio * ratio * current_size)
    return {pair: np.sort(rng.choice(size, min(n, size), replace=False))
            for pair, size in pair_sizes.items() if set(pair) <= seen and n > 0 and size > 0}
