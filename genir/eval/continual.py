"""Continual-learning summaries of incremental indexing (DSI++ and PromptDSI's definitions).

``perf[t][j]`` is a metric (e.g. Hits@10) on the test queries of corpus ``D_j`` after the model has indexed
``D_0 .. D_t`` (``j <= t``; queries ranked among every document that exists after step ``t``).

* average performance ``A_t = mean_{j<=t} perf[t][j]``;
* forgetting ``F_t = mean_{j<t} (max_{j<=l<t} perf[l][j] - perf[t][j])``, the drop from the best seen;
* backward transfer ``BWT_t = mean_{j<t} (perf[t][j] - perf[j][j])`` (negative = forgetting);
* learning (new-corpus) performance ``LA_t = mean_{j<=t} perf[j][j]``, and the newest corpus' ``perf[t][t]``.
"""

from __future__ import annotations

import numpy as np


def continual_summary(perf: list[list[float]]) -> dict[str, float]:
    """Summaries after the last step of a lower-triangular ``perf`` (list of rows ``perf[t][0..t]``)."""
    t = len(perf) - 1
    if t < 0 or any(len(row) != i + 1 for i, row in enumerate(perf)):
        raise ValueError("perf must be lower-triangular: row t holds corpora 0..t")
    old = range(t)
    return {
        "average": float(np.mean(perf[t])),
        "forgetting": float(np.mean([max(perf[l][j] for l in range(j, t)) - perf[t][j] for j in old])) if t else 0.0,
        "bwt": float(np.mean([perf[t][j] - perf[j][j] for j in old])) if t else 0.0,
        "learning": float(np.mean([perf[j][j] for j in range(t + 1)])),
        "newest": float(perf[t][t]),
        "d0_forgetting": float(max(perf[l][0] for l in range(t)) - perf[t][0]) if t else 0.0,
    }
