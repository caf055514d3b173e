"""genir's metrics against RecBole 1.2.1's own metric classes on random full rankings.

Scores are continuous random numbers (no ties), so both libraries see the same top-k lists; positives are
placed so that the cases that matter occur: one target, several targets, targets outside the top 20, more
targets than k. Skipped when recbole is not installed (``pip install --no-deps recbole==1.2.1``).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
recbole_compat = pytest.importorskip("recbole_compat")
pytest.importorskip("recbole.evaluator.metrics")

from genir.data.dataset import Dataset
from genir.data.split import Split
from genir.eval import FullRankingEvaluator, topk_metrics

KS = (5, 10, 20)
ALL_METRICS = ("recall", "ndcg", "mrr", "hit", "precision")


def random_case(seed: int, num_users: int = 48, num_items: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positive mask): per user 1 to 8 targets, a fifth of the users with every target ranked below
    the top 20, two users with 30 targets (more than any k), the rest with targets at random ranks."""
    rng = np.random.default_rng(seed)
    scores = rng.random((num_users, num_items))
    positives = np.zeros((num_users, num_items), dtype=bool)
    for user in range(num_users):
        order = np.argsort(-scores[user])
        if user < 2:
            positives[user, rng.choice(num_items, 30, replace=False)] = True
        elif user % 5 == 0:
            positives[user, rng.choice(order[20:], rng.integers(1, 9), replace=False)] = True
        elif user % 3 == 0:
            positives[user, rng.choice(num_items, 1)] = True
            positives[user, order[rng.integers(0, 20)]] = True  # and one certainly in the top 20
        else:
            positives[user, rng.choice(num_items, rng.integers(1, 9), replace=False)] = True
    return scores, positives


def genir_per_user(scores: np.ndarray, positives: np.ndarray) -> dict[str, torch.Tensor]:
    """genir's per-user metrics of a ranking given by ``torch.topk`` of the scores."""
    top = torch.topk(torch.as_tensor(scores), max(KS), dim=1).indices
    hits = torch.as_tensor(positives).gather(1, top)
    return topk_metrics(hits, torch.as_tensor(positives.sum(1)), ks=KS, metrics=ALL_METRICS)


def assert_close(genir: dict[str, float], recbole: dict[str, float]) -> None:
    assert set(genir) == set(recbole)
    for name, expected in recbole.items():
        assert genir[name] == pytest.approx(expected, abs=1e-6), name


def test_case_covers_the_edge_cases():
    scores, positives = random_case(0)
    top20 = np.argsort(-scores, axis=1)[:, :20]
    in_top20 = np.take_along_axis(positives, top20, axis=1).sum(1)
    assert (positives.sum(1) == 1).any() and (positives.sum(1) > 1).any() and (positives.sum(1) > 20).any()
    assert ((in_top20 == 0) & (positives.sum(1) > 1)).any()  # several targets, all outside the top 20
    assert (in_top20 > 0).any()


@pytest.mark.parametrize("seed", range(5))
def test_means_match_recbole(seed):
    scores, positives = random_case(seed)
    genir = {name: float(values.mean()) for name, values in genir_per_user(scores, positives).items()}
    assert_close(genir, recbole_compat.recbole_metrics(scores, positives, KS, ALL_METRICS))


def test_every_user_matches_recbole():
    scores, positives = random_case(7, num_users=24)
    genir = genir_per_user(scores, positives)
    for user in range(len(scores)):
        recbole = recbole_compat.recbole_metrics(scores[user:user + 1], positives[user:user + 1], KS, ALL_METRICS)
        assert_close({name: float(values[user]) for name, values in genir.items()}, recbole)


def small_split(seed: int = 0, num_users: int = 30, num_items: int = 80) -> Split:
    """Per user 6 to 15 interactions; by time, the last 1 to 5 are test, the one before valid, the rest train."""
    rng = np.random.default_rng(seed)
    frames = []
    for user in range(num_users):
        count = int(rng.integers(6, 16))
        items = rng.choice(num_items, count, replace=False)
        frames.append(pd.DataFrame({"user": user, "item": items, "timestamp": rng.random(count) * 1e6}))
    inter = pd.concat(frames, ignore_index=True)
    dataset = Dataset.from_frames("synthetic", inter)
    test_count = rng.integers(1, 6, dataset.num_users)
    train, valid, test = [], [], []
    for user, rows in dataset.inter.groupby("user").groups.items():
        rows = np.asarray(rows)  # already in time order
        n = int(test_count[user])
        test.extend(rows[-n:])
        valid.append(rows[-n - 1])
        train.extend(rows[:-n - 1])
    return Split(dataset, np.sort(train), np.sort(valid), np.sort(test), protocol="synthetic")


@pytest.mark.parametrize("stage", ["valid", "test"])
def test_full_ranking_evaluator_matches_recbole(stage):
    split = small_split()
    rng = np.random.default_rng(1)
    scores = rng.random((split.num_users, split.num_items))
    evaluator = FullRankingEvaluator(split, stage, ks=KS, metrics=ALL_METRICS, batch_size=7)
    genir = evaluator.evaluate(lambda batch: torch.as_tensor(scores[batch.users.numpy()]))

    masked = np.where(split.seen_matrix(stage).toarray() > 0, -np.inf, scores)  # RecBole masks history too
    users = split.eval_users(stage)
    positives = split.target_matrix(stage).toarray()[users] > 0
    assert_close(genir, recbole_compat.recbole_metrics(masked[users], positives, KS, ALL_METRICS))
