"""Per-item feature matrices: the input of semantic-ID tokenizers and of feature-aware methods.

* :func:`text_embeddings` - sentence embeddings of title, year and genres (offline all-MiniLM-L6-v2);
* :func:`kg_embeddings` - TF-IDF + SVD of each item's knowledge-graph neighbours;
* :func:`image_embeddings` - a catalogue's images through a registered image encoder (:data:`IMAGE_ENCODERS`);
* ``cf`` - item table of a BPR / LightGCN model trained on a split (:mod:`genir.methods.cf_features`: it trains
  a method, so it lives in the methods layer and is declared in the ``genir.features`` entry-point group);
* :func:`load_feature_matrix` - a user's own ``.npy`` / parquet matrix, validated.

Every built feature is cached on disk by content hash (:mod:`genir.features.cache`). :func:`item_features`
builds one by name: ``item_features("text", dataset)``, ``item_features("cf", split, method="lightgcn")``.
A new feature is a :class:`Feature` registered with ``FEATURES.register(name, Feature(fn, needs_split))`` or
declared in the ``genir.features`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from genir.data.dataset import Dataset
from genir.data.split import Split
from genir.errors import FeatureError
from genir.features.cache import cache_key, cache_root, cached
from genir.features.image import IMAGE_ENCODERS, image_embeddings
from genir.features.io import check_dimension, load_feature_matrix
from genir.features.kg import kg_coverage, kg_embeddings
from genir.features.text import encode_texts, item_texts, text_embeddings
from genir.registry import Registry


@dataclass(frozen=True)
class Feature:
    """A named per-item feature builder: ``fn(dataset or split, **kw) -> (num_items, d)``. ``needs_split``: it is
    trained on a split's training interactions (a bare dataset would leak the held-out ones), so it gets the
    split itself."""

    fn: Callable[..., np.ndarray]
    needs_split: bool = False


FEATURES: Registry[Feature] = Registry("item feature", "genir.features", FeatureError)
FEATURES.register("text", Feature(text_embeddings))
FEATURES.register("kg", Feature(kg_embeddings))
FEATURES.register("image", Feature(image_embeddings))


def item_features(name: str, split_or_dataset: Split | Dataset, **kw) -> np.ndarray:
    """(num_items, d) features ``name`` of a dataset (text, kg) or split (cf; text and kg use its dataset)."""
    feature = FEATURES.get(name)
    if feature.needs_split:
        if not isinstance(split_or_dataset, Split):
            raise FeatureError(f"{name} features are trained on a split's training interactions; pass a Split "
                               "(e.g. leave_one_out(dataset)), not a Dataset")
        return feature.fn(split_or_dataset, **kw)
    dataset = split_or_dataset.dataset if isinstance(split_or_dataset, Split) else split_or_dataset
    return feature.fn(dataset, **kw)  # a Dataset, or a Catalogue for data without interactions


__all__ = [
    "FEATURES", "IMAGE_ENCODERS", "Feature", "cache_key", "cache_root", "cached", "check_dimension",
    "encode_texts", "image_embeddings", "item_features",
    "item_texts", "kg_coverage", "kg_embeddings", "load_feature_matrix", "text_embeddings",
]
