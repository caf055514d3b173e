"""Per-item feature matrices: the input of semantic-ID tokenizers and of feature-aware methods.

* :func:`text_embeddings` - sentence embeddings of title, year and genres (offline all-MiniLM-L6-v2);
* :func:`kg_embeddings` - TF-IDF + SVD of each item's knowledge-graph neighbours;
* :func:`cf_embeddings` - item table of a BPR / LightGCN model trained on a split;
* :func:`load_feature_matrix` - a user's own ``.npy`` / parquet matrix, validated.

Every built feature is cached on disk by content hash (:mod:`genir.features.cache`). :func:`item_features`
builds one by name: ``item_features("text", dataset)``, ``item_features("cf", split, method="lightgcn")``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from genir.data.dataset import Dataset
from genir.data.split import Split
from genir.errors import FeatureError
from genir.features.cache import cache_key, cache_root, cached
from genir.features.cf import cf_embeddings
from genir.features.io import check_dimension, load_feature_matrix
from genir.features.kg import kg_coverage, kg_embeddings
from genir.features.text import item_texts, text_embeddings

FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "text": text_embeddings,
    "kg": kg_embeddings,
    "cf": cf_embeddings,
}
_NEEDS_SPLIT = {"cf"}  # trained on the training interactions, so a bare Dataset is refused


def item_features(name: str, split_or_dataset: Split | Dataset, **kw) -> np.ndarray:
    """(num_items, d) features ``name`` of a dataset (text, kg) or split (cf; text and kg use its dataset)."""
    if name not in FEATURES:
        raise FeatureError(f"unknown item feature {name!r}; available: {sorted(FEATURES)}")
    if name in _NEEDS_SPLIT:
        if not isinstance(split_or_dataset, Split):
            raise FeatureError(f"{name} features are trained on a split's training interactions; pass a Split "
                               "(e.g. leave_one_out(dataset)), not a Dataset")
        return FEATURES[name](split_or_dataset, **kw)
    dataset = split_or_dataset.dataset if isinstance(split_or_dataset, Split) else split_or_dataset
    return FEATURES[name](dataset, **kw)


__all__ = [
    "FEATURES", "cache_key", "cache_root", "cached", "cf_embeddings", "check_dimension", "item_features",
    "item_texts", "kg_coverage", "kg_embeddings", "load_feature_matrix", "text_embeddings",
]
