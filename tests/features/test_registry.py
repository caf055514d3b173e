"""FEATURES and item_features: dispatch by name to the right builder with a Dataset or a Split."""

from __future__ import annotations

import numpy as np
import pytest

from genir.data import leave_one_out
from genir.errors import FeatureError
from genir.features import FEATURES, Feature, item_features, kg_embeddings, text_embeddings
from genir.methods.cf_features import CF_FEATURE


def test_registry_names():
    """text and kg are built in; cf (which trains a method, a higher layer) comes from the entry point."""
    assert FEATURES.names() == ["cf", "image", "kg", "text"]
    assert FEATURES["text"] == Feature(text_embeddings) and FEATURES["kg"] == Feature(kg_embeddings)
    assert FEATURES["cf"] is CF_FEATURE and CF_FEATURE.needs_split


def test_dispatch_with_dataset_or_split(tiny):
    split = leave_one_out(tiny)
    a = item_features("kg", tiny, dim=4)
    b = item_features("kg", split, dim=4)  # a split's dataset is used
    assert np.array_equal(a, b) and a.shape == (tiny.num_items, 4)
    c = item_features("cf", split, dim=4, epochs=1, trainer_overrides={"batch_size": 16})
    assert c.shape == (tiny.num_items, 4)


def test_unknown_name_and_cf_without_split(tiny):
    with pytest.raises(FeatureError, match=r"unknown item feature 'audio'; available: \['cf', 'image', 'kg', 'text'\]"):
        item_features("audio", tiny)
    with pytest.raises(FeatureError, match="cf features are trained on a split's training interactions"):
        item_features("cf", tiny)
