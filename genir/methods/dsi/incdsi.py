"""IncDSI (Kishore et al., ICML 2023): add documents to a trained atomic DSI by solving for their classifier rows
against the frozen model, with no gradient step on the encoder.

For the new documents' training queries ``Q_d`` (pseudo-queries and the document text, embedded once by the frozen
encoder) the new row ``w_d`` must score above every other row by a margin, and for the *cached* embeddings of old
training queries (IncDSI keeps them: it is a cache-based method, not rehearsal of text) no new row may score above
the old query's own document:

    min_W  sum_d sum_{q in Q_d} relu(max_{j != d} s_j(q) + m - w_d . q)
         + lam * sum_{q' in old} sum_d relu(w_d . q' - s_own(q') + m)

solved jointly for one step's rows by Adam from ``w_d = init_scale * normalise(mean(Q_d))``. The paper solves each
document's problem separately (a few tens of ms with L-BFGS); jointly keeps new documents apart from each other
as well, in one small batched problem.
"""

from __future__ import annotations

import numpy as np
import torch


def solve_new_rows(queries: torch.Tensor, owner: np.ndarray, num_new: int, old_rows: torch.Tensor,
                   old_queries: torch.Tensor, old_own_scores: torch.Tensor, *, init_scale: float = 20.0,
                   margin: float = 1.0, old_weight: float = 1.0, steps: int = 300, lr: float = 0.05,
                   seed: int = 0) -> torch.Tensor:
    """(num_new, H) rows for the new documents.

    Args:
        queries: (M, H) normalised embeddings of the new documents' training queries.
        owner: (M,) which new document (0..num_new-1) each query belongs to.
        old_rows: (N_old, H) frozen rows of the documents already indexed.
        old_queries: (C, H) cached normalised embeddings of old training queries.
        old_own_scores: (C,) each cached query's score for its own document.
    """
    torch.manual_seed(seed)
    owner_t = torch.as_tensor(owner, dtype=torch.long)
    init = torch.zeros(num_new, queries.shape[1]).index_add_(0, owner_t, queries.float())
    w = torch.nn.Parameter(torch.nn.functional.normalize(init, dim=1) * init_scale)
    opt = torch.optim.Adam([w], lr=lr * init_scale)
    with torch.no_grad():
        old_best = (queries.float() @ old_rows.float().T).max(1).values  # (M,) the old rows' best score
    for _ in range(steps):
        new = queries.float() @ w.T  # (M, num_new)
        own = new.gather(1, owner_t[:, None]).squeeze(1)
        other_new = new.scatter(1, owner_t[:, None], float("-inf")).max(1).values if num_new > 1 else old_best
        rival = torch.maximum(old_best, other_new)
        loss_new = torch.relu(rival + margin - own).mean()
        stolen = old_queries.float() @ w.T - old_own_scores.float()[:, None] + margin  # (C, num_new)
        loss_old = torch.relu(stolen).sum(1).mean()
        loss = loss_new + old_weight * loss_old
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() == 0.0:
            break
    return w.detach()
