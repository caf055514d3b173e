"""The random per-user split (MMRec's protocol): ratios, seeding, no leakage, train-only inputs and masks, and the
evaluator's several-targets metrics against MMRec's definitions."""

import numpy as np
import pandas as pd
import pytest
import torch

from genir.data import Dataset, make_split, random_split
from genir.errors import ConfigError
from genir.eval.evaluator import FullRankingEvaluator
from genir.eval.metrics import topk_metrics


def _pairs(split, part: str) -> set[tuple[int, int]]:
    f = split.frame(part)
    return set(zip(f["user"].tolist(), f["item"].tolist()))


def test_ml100k_ratios_disjoint_and_seeded(ml100k):
    s = make_split(ml100k, "random")
    assert s.protocol == "random(0.1,0.1,seed=0)" and not s.test_sees_valid
    assert len(s.train_rows) + len(s.valid_rows) + len(s.test_rows) == ml100k.num_interactions
    n = np.bincount(ml100k.inter["user"], minlength=ml100k.num_users)
    n_test = np.bincount(s.frame("test")["user"], minlength=ml100k.num_users)
    n_valid = np.bincount(s.frame("valid")["user"], minlength=ml100k.num_users)
    assert (n_test == np.maximum(1, np.rint(n * 0.1))).all() and (n_valid == np.maximum(1, np.rint(n * 0.1))).all()
    # several targets per user, as in MMRec (every ML-100K user has >= 20 ratings)
    assert n_test.min() >= 2 and len(s.eval_users("test")) == ml100k.num_users
    # no held-out (user, item) is a training pair of that user
    train = _pairs(s, "train")
    assert not (train & _pairs(s, "valid")) and not (train & _pairs(s, "test"))
    assert not (_pairs(s, "valid") & _pairs(s, "test"))
    again = random_split(ml100k, seed=0)
    other = random_split(ml100k, seed=1)
    assert np.array_equal(again.test_rows, s.test_rows) and not np.array_equal(other.test_rows, s.test_rows)
    assert again.fingerprint() == s.fingerprint() != other.fingerprint()
    # the recorded protocol rebuilds the same split (a run dir or an index manifest stores it)
    assert make_split(ml100k, other.protocol).fingerprint() == other.fingerprint()
    assert make_split(ml100k, "temporal(0.2,0.1)").protocol == "temporal(0.2,0.1)"
    with pytest.raises(ConfigError, match="seed must be a number"):
        make_split(ml100k, "random(0.1,0.1,seed=x)")
    # the held-out part is random, not the user's latest interactions (leave-one-out's)
    ts = ml100k.inter["timestamp"].to_numpy()
    latest = ml100k.inter.assign(t=ts).groupby("user")["t"].transform("max").to_numpy()
    assert (ts[s.test_rows] == latest[s.test_rows]).mean() < 0.5


def test_inputs_and_masks_are_training_items_only(ml100k):
    s = random_split(ml100k)
    train = s.train_matrix()
    for stage in ("valid", "test"):
        assert np.array_equal(s.known_rows(stage), s.train_rows)
        assert (s.seen_matrix(stage) != train).nnz == 0
        hist = s.histories(stage)
        for u in range(0, ml100k.num_users, 97):
            assert set(hist[u].tolist()) == set(train[u].indices.tolist())
    ev = FullRankingEvaluator(s, "test")
    assert (ev.seen != train).nnz == 0  # masked at ranking: training items, not validation items


def test_small_users_repeats_and_bad_ratios():
    inter = pd.DataFrame({"user": ["a"] * 2 + ["b"] * 6 + ["c"] * 3,
                          "item": ["x", "y", "x", "y", "z", "w", "x", "y", "x", "y", "z"],
                          "timestamp": range(11)})
    s = random_split(Dataset.from_frames("t", inter), seed=3)
    d = s.describe()
    assert d["train_only_users"] == 1 and d["repeated_rows"] == 2  # user a; b's repeated x and y
    users = s.dataset.inter["user"].to_numpy()
    a = s.dataset.user_index("a")
    assert a not in set(users[s.valid_rows]) | set(users[s.test_rows])
    # b's repeated items land on one side each: a pair is never both trained on and held out
    assert not (_pairs(s, "train") & (_pairs(s, "valid") | _pairs(s, "test")))
    for u in ("b", "c"):  # 3+ distinct items: one test, one valid, the rest train
        k = s.dataset.user_index(u)
        assert (users[s.test_rows] == k).sum() >= 1 and (users[s.valid_rows] == k).sum() >= 1
        assert (users[s.train_rows] == k).sum() >= 1
    for bad in ({"valid_frac": 0.5, "test_frac": 0.5}, {"min_interactions": 2}):
        with pytest.raises(ConfigError):
            random_split(Dataset.from_frames("t", inter), **bad)


def _mmrec_recall(pos_index: np.ndarray, pos_len: np.ndarray) -> np.ndarray:
    """Recall@1..K by MMRec's definition (utils/metrics.py, recall_): cumulative hits over the user's held-out
    items, per user (written here from its formula)."""
    return np.cumsum(pos_index, axis=1) / pos_len[:, None]


def _mmrec_ndcg(pos_index: np.ndarray, pos_len: np.ndarray) -> np.ndarray:
    """NDCG@1..K by MMRec's definition (ndcg_): binary DCG over the ideal DCG of min(held-out items, k) hits."""
    k = pos_index.shape[1]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = np.cumsum(pos_index * disc, axis=1)
    ideal = np.cumsum(disc)
    out = np.zeros_like(dcg)
    for row in range(len(pos_len)):
        for j in range(k):
            out[row, j] = dcg[row, j] / ideal[min(pos_len[row], j + 1) - 1]
    return out


def test_several_target_metrics_match_mmrec_definitions():
    rng = np.random.default_rng(0)
    hits = rng.random((64, 20)) < 0.2
    pos_len = hits.sum(1) + rng.integers(1, 6, size=64)  # more held-out items than hits in the top 20
    got = topk_metrics(torch.from_numpy(hits), torch.from_numpy(pos_len), ks=(5, 10, 20), metrics=("recall", "ndcg"))
    recall, ndcg = _mmrec_recall(hits, pos_len), _mmrec_ndcg(hits, pos_len)
    for k in (5, 10, 20):
        assert np.allclose(got[f"recall@{k}"].numpy(), recall[:, k - 1])
        assert np.allclose(got[f"ndcg@{k}"].numpy(), ndcg[:, k - 1])
