"""DSI semantic docids: hierarchical k-means paths (Tay et al., 2022, "Transformer Memory as a DSI").

The items are clustered into ``k`` groups; every group with more than ``c`` items is clustered again, recursively.
An item's docid is the path of cluster digits from the root to its leaf, followed by its position inside the
leaf. Paths have variable depth; genir's IDs all have one length, so:

* :meth:`HierarchicalKMeans.encode` returns the cluster path padded to the deepest leaf's depth ``D`` with the
  dedicated code ``pad_code = k`` ("no deeper cluster"), hence every level has ``k + 1`` codes;
* the position inside the leaf is the collision level (:mod:`genir.ids.collisions`, policy ``index``): items
  of one leaf share a padded path and get 0, 1, 2... by item index.

So a DSI docid ``3 7 12`` (leaf at depth 2, position 12) becomes ``(3, 7, pad, ..., pad, 12)`` of length
``D + 1``; the DSI string is what remains after dropping the pads. The last level's size is the largest leaf
(<= c, except when ``max_depth`` stops the recursion or k-means cannot split a group of identical points).
Deviations from DSI: the leaf position may instead follow popularity (policy ``popularity``), and ``encode``
places new items by descending to the nearest centroid at each node.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import faiss
import numpy as np

from genir.ids.base import IdScheme
from genir.ids.config import SchemeConfig, param
from genir.ids.rq_kmeans import _nearest


@dataclass
class HierarchicalKMeansConfig(SchemeConfig):
    k: int = param(10, "clusters per node (DSI: 10)", min=2, max=100_000)
    c: int = param(100, "a node with at most c items is a leaf (DSI: 100)", min=1)
    max_depth: int = param(16, "at most this many cluster levels; deeper groups stay leaves", min=1, max=64)
    niter: int = param(20, "k-means iterations per node", min=1)
    nredo: int = param(1, "k-means runs per node; the one with the lowest error is kept", min=1)
    seed: int = param(42, "k-means seed (node i uses seed + i)", min=0)
    max_points_per_centroid: int = param(256, "faiss subsamples to k x this many points per node", min=1)


class HierarchicalKMeans(IdScheme):
    """Recursive k-means tree; ``encode`` gives each item's padded cluster path (see the module docstring).

    The tree is stored in breadth-first order: node 0 is the root; the children of node ``i`` are the nodes
    ``first_child[i] .. first_child[i] + num_children[i] - 1`` (digit = position among them), each with its
    centroid in ``centroids``; a leaf has no children.
    """

    name = "hkmeans"
    config_class = HierarchicalKMeansConfig

    def __init__(self, config: HierarchicalKMeansConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.centroids = np.zeros((0, 0), dtype=np.float32)  # (M, d) centroid of each node (root: zeros)
        self.first_child = np.zeros(0, dtype=np.int64)  # (M,)
        self.num_children = np.zeros(0, dtype=np.int64)  # (M,)
        self.depth = 0  # D, the number of cluster levels of the deepest leaf (>= 1)

    @property
    def pad_code(self) -> int:
        return self.config.k

    @property
    def level_sizes(self) -> list[int]:
        self._require_fitted()
        return [self.config.k + 1] * self.depth

    def fit(self, features) -> HierarchicalKMeans:
        self.num_features = None
        x = self._check_features(features)  # (N, d)
        n, d = x.shape
        cfg = self.config
        centroids, first_child, num_children, depths = [np.zeros(d, np.float32)], [], [], [0]
        queue = deque([(np.arange(n), 0)])  # (items of the node, its depth); node ids follow queue order
        node = 0
        while queue:
            items, depth = queue.popleft()
            children = self._split(x[items], node) if len(items) > cfg.c and depth < cfg.max_depth else None
            first_child.append(len(centroids))
            if children is None:
                num_children.append(0)
            else:
                kept, labels = children  # (m, d) centroids of the non-empty clusters; (len(items),) digits
                num_children.append(len(kept))
                for digit, centroid in enumerate(kept):
                    centroids.append(centroid)
                    depths.append(depth + 1)
                    queue.append((items[labels == digit], depth + 1))
            node += 1
        self.centroids = np.stack(centroids).astype(np.float32)
        self.first_child = np.asarray(first_child, dtype=np.int64)
        self.num_children = np.asarray(num_children, dtype=np.int64)
        self.depth = max(1, max(depths))
        self.num_features = d
        return self

    def _split(self, x: np.ndarray, node: int) -> tuple[np.ndarray, np.ndarray] | None:
        """k-means of one node's items: (centroids of the non-empty clusters, digit of each item), or None when
        the items do not split (all in one cluster). The digits come from the same nearest-centroid search that
        :meth:`encode` runs on these items, so encoding the training features retraces the tree exactly."""
        cfg = self.config
        k = min(cfg.k, len(x))
        km = faiss.Kmeans(x.shape[1], k, niter=cfg.niter, nredo=cfg.nredo, seed=cfg.seed + node, verbose=False,
                          min_points_per_centroid=1, max_points_per_centroid=cfg.max_points_per_centroid)
        km.train(x)
        cents = np.ascontiguousarray(km.centroids, dtype=np.float32)  # (k, d)
        kept = cents[np.unique(_nearest(x, cents))]  # empty clusters dropped: nobody's nearest, so no change
        if len(kept) < 2:
            return None
        return kept, _nearest(x, kept)

    def encode(self, features) -> np.ndarray:
        self._require_fitted()
        x = self._check_features(features)  # (N, d)
        n = len(x)
        codes = np.full((n, self.depth), self.pad_code, dtype=np.int64)
        node_of = np.zeros(n, dtype=np.int64)  # current node of each item
        for level in range(self.depth):
            inner = np.flatnonzero(self.num_children[node_of] > 0)  # items that go one level deeper
            if len(inner) == 0:
                break
            inner = inner[np.argsort(node_of[inner], kind="stable")]  # grouped by node, item order inside
            nodes, starts = np.unique(node_of[inner], return_index=True)
            for node, members in zip(nodes, np.split(inner, starts[1:])):
                first = self.first_child[node]
                digits = _nearest(x[members], self.centroids[first:first + self.num_children[node]])
                codes[members, level] = digits
                node_of[members] = first + digits
        return codes

    def _get_state(self):
        return {"depth": self.depth}, {"centroids": self.centroids, "first_child": self.first_child,
                                       "num_children": self.num_children}

    def _set_state(self, meta, arrays):
        self.depth = int(meta["depth"])
        self.centroids = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)
        self.first_child = arrays["first_child"].astype(np.int64)
        self.num_children = arrays["num_children"].astype(np.int64)
