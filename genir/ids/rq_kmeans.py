"""RQ-KMeans: residual k-means semantic IDs, training-free (faiss).

Level 1 clusters the item features into K_1 groups; each later level clusters what the previous levels left
unexplained (the residual ``r_l = r_{l-1} - e^l_{c_l}``, r_0 = x). It is RQ-VAE's quantizer without the
encoder, decoder and gradient training: a strong, fast and deterministic baseline for learned tokenizers.
Codebooks come from ``faiss.Kmeans`` with a fixed seed per level.

Fit and encode assign with the same exact L2 search against the final centroids, so ``fit_encode(x)`` equals
``encode(x)`` after a reload.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from genir.errors import ConfigError
from genir.ids.base import IdScheme
from genir.ids.config import SchemeConfig, check_level_list, level_sizes_of, param


@dataclass
class RQKMeansConfig(SchemeConfig):
    num_levels: int = param(3, "number of semantic levels L", min=1, max=16)
    codebook_size: int | list[int] = param(256, "K codes per level, or one K per level", min=1)  # noqa: RUF009
    niter: int = param(20, "k-means iterations per level", min=1)
    nredo: int = param(1, "k-means runs per level; the one with the lowest error is kept", min=1)
    seed: int = param(42, "k-means seed (level l uses seed + l)", min=0)
    max_points_per_centroid: int = param(256, "faiss subsamples to K x this many points per level", min=1)

    def check(self, source: str, prefix: str) -> None:
        check_level_list(self, source, prefix)


class RQKMeans(IdScheme):
    """Residual k-means over the raw features: ``num_levels`` codebooks of ``codebook_size`` centroids."""

    name = "rq_kmeans"
    config_class = RQKMeansConfig

    def __init__(self, config: RQKMeansConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.codebooks: list[np.ndarray] = []  # per level (K_l, d) float32

    @property
    def level_sizes(self) -> list[int]:
        return level_sizes_of(self.config.codebook_size, self.config.num_levels)

    def fit(self, features) -> RQKMeans:
        self.num_features = None
        x = self._check_features(features)  # (N, d)
        n, d = x.shape
        if max(self.level_sizes) > n:
            raise ConfigError(f"{self.name}: codebook_size {max(self.level_sizes)} exceeds the {n} items to "
                              "cluster; use a smaller codebook")
        c = self.config
        residual = x.copy()
        self.codebooks = []
        for level, k in enumerate(self.level_sizes):
            km = faiss.Kmeans(d, k, niter=c.niter, nredo=c.nredo, seed=c.seed + level, verbose=False,
                              min_points_per_centroid=1, max_points_per_centroid=c.max_points_per_centroid)
            km.train(residual)
            centroids = np.ascontiguousarray(km.centroids, dtype=np.float32)  # (K, d)
            residual -= centroids[_nearest(residual, centroids)]
            self.codebooks.append(centroids)
        self.num_features = d
        return self

    def encode(self, features) -> np.ndarray:
        self._require_fitted()
        residual = self._check_features(features).copy()  # (N, d)
        codes = np.empty((len(residual), self.num_levels), dtype=np.int64)
        for level, centroids in enumerate(self.codebooks):
            codes[:, level] = _nearest(residual, centroids)
            residual -= centroids[codes[:, level]]
        return codes

    def quantize(self, features) -> np.ndarray:
        """(N, d) sum of each item's chosen centroids: the reconstruction the codes stand for."""
        codes = self.encode(features)
        return sum(cb[codes[:, level]] for level, cb in enumerate(self.codebooks))

    def _get_state(self):
        return {}, {f"codebook_{level}": cb for level, cb in enumerate(self.codebooks)}

    def _set_state(self, meta, arrays):
        self.codebooks = [np.ascontiguousarray(arrays[f"codebook_{level}"], dtype=np.float32)
                          for level in range(self.num_levels)]


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(N,) int64 index of the nearest centroid (exact L2, faiss flat index)."""
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    _, idx = index.search(x, 1)
    return idx[:, 0].astype(np.int64)
