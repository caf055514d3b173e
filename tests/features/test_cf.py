"""CF embeddings: BPR / LightGCN item tables trained by the Trainer (early stopping on), reproducible for a seed,
cached so a second call does not train, and clear errors for what cannot give item embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from genir.data import leave_one_out
from genir.errors import FeatureError
from genir.methods.cf_features import cf_embeddings
from genir.training import Trainer

FAST = {"batch_size": 16, "lr": 0.01}


@pytest.fixture
def split(tiny):
    return leave_one_out(tiny)


@pytest.fixture
def fits(monkeypatch):
    """Records the TrainResult of every Trainer.fit call."""
    results = []
    real_fit = Trainer.fit

    def fit(self):
        results.append(real_fit(self))
        return results[-1]

    monkeypatch.setattr(Trainer, "fit", fit)
    return results


@pytest.mark.parametrize("method", ["bpr", "lightgcn"])
def test_trains_and_returns_item_table(split, method, fits):
    e = cf_embeddings(split, method=method, dim=16, seed=0, epochs=3, trainer_overrides=FAST, cache=False)
    assert e.shape == (split.num_items, 16) and e.dtype == np.float32 and np.isfinite(e).all()
    assert len(fits) == 1 and len(fits[0].history) <= 3
    again = cf_embeddings(split, method=method, dim=16, seed=0, epochs=3, trainer_overrides=FAST, cache=False)
    assert np.array_equal(e, again)  # the seed fixes initialization, sampling and shuffling
    other = cf_embeddings(split, method=method, dim=16, seed=1, epochs=3, trainer_overrides=FAST, cache=False)
    assert not np.allclose(e, other)


def test_early_stopping_on_validation(split, fits):
    cf_embeddings(split, dim=8, epochs=60, trainer_overrides={**FAST, "patience": 2}, cache=False)
    assert fits[0].stopped_early and len(fits[0].history) < 60
    assert "ndcg@10" in fits[0].best_valid


def test_cached_by_every_setting(split, fits, _isolated_cache):
    a = cf_embeddings(split, dim=8, seed=0, epochs=2, trainer_overrides=FAST)
    b = cf_embeddings(split, dim=8, seed=0, epochs=2, trainer_overrides=FAST, progress=True)  # no effect on key
    assert np.array_equal(a, b) and len(fits) == 1
    cf_embeddings(split, dim=8, seed=0, epochs=3, trainer_overrides=FAST)
    cf_embeddings(split, dim=8, seed=1, epochs=2, trainer_overrides=FAST)
    cf_embeddings(split, dim=4, seed=0, epochs=2, trainer_overrides=FAST)
    cf_embeddings(split, method="lightgcn", dim=8, seed=0, epochs=2, trainer_overrides=FAST)
    cf_embeddings(split, dim=8, seed=0, epochs=2, trainer_overrides={**FAST, "lr": 0.02})
    assert len(fits) == 6
    assert len(list((_isolated_cache / "cf").glob("*.npy"))) == 6


def test_errors(split, tiny):
    with pytest.raises(FeatureError, match="no item embeddings; use 'bpr' or 'lightgcn'"):
        cf_embeddings(split, method="pop")
    with pytest.raises(FeatureError, match="unknown method 'nope'"):
        cf_embeddings(split, method="nope")
    with pytest.raises(FeatureError, match=r"unknown field\(s\) \['bogus'\]"):
        cf_embeddings(split, trainer_overrides={"bogus": 1})
    with pytest.raises(FeatureError, match="got Dataset, pass e.g. leave_one_out"):
        cf_embeddings(tiny)
