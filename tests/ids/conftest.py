"""Small synthetic feature matrices built in-process (clustered Gaussian blobs), and one thread per test."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: with several OpenMP threads on a busy machine, torch and faiss spend far more time
    waiting for each other's threads than computing (a 240-point k-means: 1 ms on one thread, ~1 s on two)."""
    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(faiss_threads)


def labelled_blobs(n: int = 240, d: int = 16, centers: int = 8, spread: float = 0.15,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """((n, d) float32 points around ``centers`` random unit-scale centres, (n,) centre of each point)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centers, d))
    labels = rng.integers(centers, size=n)
    return (means[labels] + spread * rng.normal(size=(n, d))).astype(np.float32), labels


def make_blobs(**kw) -> np.ndarray:
    return labelled_blobs(**kw)[0]


@pytest.fixture
def blobs() -> np.ndarray:
    return make_blobs()


TINY_RQVAE = {"num_levels": 2, "codebook_size": 8, "latent_dim": 4, "hidden_dims": [32], "epochs": 30,
              "batch_size": 64, "lr": 3e-3, "device": "cpu", "progress": False}
