"""FEATURES and item_features: dispatch by name to the right builder with a Dataset or a Split."""

from __future__ import annotations

import numpy as np
import pytest

from genir.data import leave_one_out
from genir.errors import FeatureError
from genir.features import FEATURES, cf_embeddings, item_features, kg_embeddings, text_embeddings


def test_registry_names():
    assert FEATURES == {"text": text_embeddings, "kg": kg_embeddings, "cf": cf_embeddings}


def test_dispatch_with_dataset_or_split(tiny):
    split = leave_one_out(tiny)
    a = item_features("kg", tiny, dim=4)
    b = item_features("kg", split, dim=4)  # a split's dataset is used
    assert np.array_equal(a, b) and a.shape == (tiny.num_items, 4)
    c = item_features("cf", split, dim=4, epochs=1, trainer_overrides={"batch_size": 16})
    assert c.shape == (tiny.num_items, 4)


def test_unknown_name_and_cf_without_split(tiny):
    with pytest.raises(FeatureError, match=r"unknown item feature 'image'; available: \['cf', 'kg', 'text'\]"):
        item_features("image", tiny)
    with pytest.raises(FeatureError, match="cf features are trained on a split's training interactions"):
        item_features("cf", tiny)
