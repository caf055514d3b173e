"""The user-item interaction graph as the normalized adjacency that LightGCN-style propagation multiplies by
(LightGCN, MetaMMF's GCN backbone, MIG-GT)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from genir.data.split import Split


def normalized_adjacency(split: Split) -> torch.Tensor:
    """Symmetric-normalized (U+I) x (U+I) adjacency of the training interactions, as a sparse COO tensor."""
    r = split.train_matrix().tocoo()
    n_u, n_i = split.num_users, split.num_items
    rows = np.concatenate([r.row, r.col + n_u])
    cols = np.concatenate([r.col + n_u, r.row])
    a = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_u + n_i, n_u + n_i)).tocsr()
    deg = np.asarray(a.sum(1)).ravel()
    inv = np.zeros_like(deg, dtype=np.float32)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    a = sp.diags(inv) @ a @ sp.diags(inv)
    a = a.tocoo()
    idx = torch.as_tensor(np.vstack([a.row, a.col]), dtype=torch.long)
    values = torch.as_tensor(a.data, dtype=torch.float32)
    return torch.sparse_coo_tensor(idx, values, a.shape, check_invariants=True).coalesce()
