"""Shared fixtures: tiny hand-made datasets built in-process, and the real MovieLens-100K (loaded once)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def single_threaded():
    """A module-scoped autouse fixture running torch and faiss on one thread (restored after the module); assign
    it at module level: ``_one_thread = single_threaded()``. Tiny problems on a busy 2-core machine: with several
    OpenMP threads torch and faiss spend far more time waiting for each other's threads than computing (a
    240-point k-means: 1 ms on one thread, ~1 s on two)."""

    @pytest.fixture(autouse=True, scope="module")
    def _one_thread():
        import faiss
        import torch

        torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
        yield
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)

    return _one_thread


def make_inter(n_users=30, n_items=40, per_user=12, seed=0) -> pd.DataFrame:
    """Random interactions with distinct timestamps; each user has `per_user` distinct items."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 1_000_000
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for i in items:
            t += int(rng.integers(1, 50))
            rows.append((f"u{u}", f"i{i}", t, float(rng.integers(1, 6))))
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order != time order


@pytest.fixture
def tiny_dataset():
    from genir.data import Dataset

    return Dataset.from_frames("tiny", make_inter())


@pytest.fixture(scope="session")
def ml100k():
    from genir.data import load_dataset

    return load_dataset("ml-100k")


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    from genir.data import leave_one_out

    return leave_one_out(ml100k)
