"""Hand-computed values of genir's top-k metrics (RecBole 1.2.1's definitions).

Ranks below are 1-based: "a positive at rank 3" means the third recommended item is a target.
"""

import math

import pytest
import torch

from genir.eval import parse_metric, topk_metrics

ALL_METRICS = ("recall", "ndcg", "mrr", "hit", "precision")


def metrics_of(hit_ranks: list[int], num_pos: int, ks, width: int | None = None) -> dict[str, float]:
    """Metrics of one user whose targets sit at the given 1-based ranks of a ranking ``width`` items long."""
    width = width or max(ks)
    hits = torch.zeros(1, width, dtype=torch.bool)
    for rank in hit_ranks:
        hits[0, rank - 1] = True
    out = topk_metrics(hits, torch.tensor([num_pos]), ks=ks, metrics=ALL_METRICS)
    return {name: float(value[0]) for name, value in out.items()}


def assert_metrics(actual: dict[str, float], expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, abs=1e-12), name


def test_one_positive_at_rank_3():
    got = metrics_of([3], num_pos=1, ks=(1, 2, 3, 5))
    assert_metrics(got, {
        "ndcg@5": 0.5,  # 1 / log2(3 + 1), ideal DCG 1
        "ndcg@3": 0.5,
        "ndcg@2": 0.0,
        "mrr@5": 1 / 3,
        "mrr@3": 1 / 3,
        "mrr@2": 0.0,
        "hit@1": 0.0,
        "hit@2": 0.0,
        "hit@3": 1.0,
        "hit@5": 1.0,
        "recall@2": 0.0,
        "recall@3": 1.0,
        "precision@3": 1 / 3,
        "precision@5": 0.2,
    })


def test_two_positives_at_ranks_1_and_4():
    got = metrics_of([1, 4], num_pos=2, ks=(1, 3, 4, 5))
    ideal_2 = 1 + 1 / math.log2(3)
    assert_metrics(got, {
        "ndcg@5": (1 + 1 / math.log2(5)) / ideal_2,
        "ndcg@4": (1 + 1 / math.log2(5)) / ideal_2,
        "ndcg@3": 1 / ideal_2,  # one hit, but two targets fit in the top 3: the ideal has two hits
        "ndcg@1": 1.0,  # only one target fits in the top 1
        "recall@1": 0.5,
        "recall@3": 0.5,
        "recall@4": 1.0,
        "precision@1": 1.0,
        "precision@3": 1 / 3,
        "precision@4": 0.5,
        "precision@5": 0.4,
        "mrr@1": 1.0,
        "mrr@5": 1.0,  # reciprocal rank of the first target only
        "hit@1": 1.0,
        "hit@5": 1.0,
    })


def test_first_hit_at_rank_2_sets_mrr_even_with_later_hits():
    got = metrics_of([2, 3], num_pos=3, ks=(1, 5))
    assert_metrics(got, {
        "mrr@1": 0.0,
        "mrr@5": 0.5,
        "recall@5": 2 / 3,
        "ndcg@5": (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)),
    })


def test_targets_all_outside_the_top_k_score_zero():
    got = metrics_of([], num_pos=4, ks=(5, 10))
    assert all(value == 0.0 for value in got.values())


def test_more_targets_than_k_with_a_perfect_top_k():
    got = metrics_of([1, 2, 3, 4, 5], num_pos=30, ks=(5,))
    assert_metrics(got, {"ndcg@5": 1.0, "recall@5": 5 / 30, "precision@5": 1.0, "mrr@5": 1.0, "hit@5": 1.0})


def test_ranking_shorter_than_k_is_padded_with_misses():
    short = metrics_of([2], num_pos=1, ks=(5, 10), width=3)
    full = metrics_of([2], num_pos=1, ks=(5, 10), width=10)
    assert short == full
    assert_metrics(short, {"precision@10": 0.1, "ndcg@10": 1 / math.log2(3)})


def test_batch_rows_equal_single_user_rows():
    generator = torch.Generator().manual_seed(0)
    hits = torch.rand(16, 20, generator=generator) < 0.15
    num_pos = hits.sum(1) + torch.randint(1, 4, (16,), generator=generator)
    batch = topk_metrics(hits, num_pos, ks=(5, 10, 20), metrics=ALL_METRICS)
    for row in range(16):
        single = topk_metrics(hits[row:row + 1], num_pos[row:row + 1], ks=(5, 10, 20), metrics=ALL_METRICS)
        for name in batch:
            assert float(batch[name][row]) == float(single[name][0]), (row, name)


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError):
        topk_metrics(torch.zeros(1, 5, dtype=torch.bool), torch.tensor([1]), ks=(5,), metrics=("auc",))


@pytest.mark.parametrize("name, expected", [("ndcg@10", ("ndcg", 10)), ("Recall@5", ("recall", 5))])
def test_parse_metric(name, expected):
    assert parse_metric(name) == expected


@pytest.mark.parametrize("bad", ["ndcg", "ndcg@", "auc@10", "ndcg@ten"])
def test_parse_metric_rejects(bad):
    with pytest.raises(ValueError):
        parse_metric(bad)
