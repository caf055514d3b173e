"""Atomic IDs: every item is its own single code (DSI's "atomic docids"; the usual item-id vocabulary).

``L = 1`` and ``K = N``: item ``i`` has the ID ``(i,)``. No feature content is used, only the number of rows, so
this is the baseline that semantic IDs must beat; it cannot place unseen items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genir.errors import FeatureError
from genir.ids.base import IdScheme
from genir.ids.config import SchemeConfig


@dataclass
class AtomicIdsConfig(SchemeConfig):
    """No hyper-parameters."""


class AtomicIds(IdScheme):
    """One unique code per item: the row index."""

    name = "atomic"
    config_class = AtomicIdsConfig

    def __init__(self, config: AtomicIdsConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.num_items = 0

    @property
    def level_sizes(self) -> list[int]:
        self._require_fitted()
        return [self.num_items]

    def fit(self, features) -> AtomicIds:
        self.num_features = None
        x = self._check_features(features)
        self.num_items, self.num_features = x.shape
        return self

    def encode(self, features) -> np.ndarray:
        """(N, 1) row indices; ``features`` must have the fitted number of rows (the same items)."""
        self._require_fitted()
        x = self._check_features(features)
        if len(x) != self.num_items:
            raise FeatureError(f"{self.name}: atomic IDs cover the {self.num_items} fitted items; got {len(x)} rows")
        return np.arange(self.num_items, dtype=np.int64)[:, None]

    def _get_state(self):
        return {"num_items": self.num_items}, {}

    def _set_state(self, meta, arrays):
        self.num_items = int(meta["num_items"])
