"""Small synthetic feature matrices built in-process (clustered Gaussian blobs), and one thread per test."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import single_threaded

_one_thread = single_threaded()


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
