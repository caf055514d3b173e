"""Collision handling: hand-made groups, the popularity order, the 'none' policy and a property over random
codes (IDs unique and of one length)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from genir.ids import SemanticIdError, SemanticIdTable, collision_report, group_ranks, resolve_collisions

CODES = np.array([[1, 2], [0, 0], [1, 2], [3, 3], [1, 2]])  # items 0, 2, 4 share (1, 2)


def test_index_policy_numbers_group_members_by_item_index():
    ids, report = resolve_collisions(CODES, "index")
    assert ids.shape == (5, 3)
    np.testing.assert_array_equal(ids[:, :2], CODES)
    assert ids[[0, 2, 4], 2].tolist() == [0, 1, 2]
    assert ids[[1, 3], 2].tolist() == [0, 0]
    assert report.max_group == 3 and report.num_unique == 3 and report.num_shared_tuples == 1
    assert report.collision_rate == pytest.approx(1 - 3 / 5)
    assert report.colliding_fraction == pytest.approx(3 / 5)


def test_popularity_policy_puts_the_most_popular_first_and_breaks_ties_by_index():
    pop = np.array([5.0, 100.0, 9.0, 0.0, 9.0])
    ids, _ = resolve_collisions(CODES, "popularity", popularity=pop)
    assert ids[[2, 4, 0], 2].tolist() == [0, 1, 2]  # 9 (item 2) before 9 (item 4) before 5
    with pytest.raises(ValueError, match="popularity has 2 values for 5 items"):
        resolve_collisions(CODES, "popularity", popularity=[1, 2])
    with pytest.raises(ValueError, match="needs a popularity vector"):
        resolve_collisions(CODES, "popularity")


def test_none_policy_refuses_duplicates_and_keeps_unique_codes():
    with pytest.raises(SemanticIdError, match=r"2 of 5 items repeat.*largest group: 3 items, e.g. items \[0, 2, 4\]"):
        resolve_collisions(CODES, "none")
    unique = CODES[[0, 1, 3]]
    ids, report = resolve_collisions(unique, "none")
    np.testing.assert_array_equal(ids, unique)
    assert report.max_group == 1 and report.collision_rate == 0.0


def test_extra_level_is_appended_even_without_collisions():
    ids, report = resolve_collisions([[0, 1], [1, 0]], "index")
    assert ids[:, 2].tolist() == [0, 0] and report.max_group == 1


def test_table_from_semantic_codes_sizes_the_extra_level_by_the_largest_group():
    table = SemanticIdTable.from_semantic_codes(CODES, [4, 4], "index", scheme="hand")
    assert table.level_sizes == [4, 4, 3] and table.semantic_levels == 2 and table.id_length == 3
    assert table.stats()["max_group"] == 3


def test_bad_input():
    with pytest.raises(ValueError, match="collision policy must be one of"):
        resolve_collisions(CODES, "sinkhorn")
    with pytest.raises(SemanticIdError, match="negative code -1"):
        collision_report([[0, -1]])
    with pytest.raises(SemanticIdError, match="expected integer codes"):
        collision_report([[0.5, 1.0]])


@settings(max_examples=60, deadline=None)
@given(codes=arrays(np.int64, st.tuples(st.integers(1, 40), st.integers(1, 3)), elements=st.integers(0, 3)),
       policy=st.sampled_from(["index", "popularity"]), seed=st.integers(0, 2**16))
def test_resolved_ids_are_unique_fixed_length_and_ranks_are_dense(codes, policy, seed):
    pop = np.random.default_rng(seed).integers(0, 5, size=len(codes))
    ids, report = resolve_collisions(codes, policy, popularity=pop)
    assert ids.shape == (len(codes), codes.shape[1] + 1)
    assert len(np.unique(ids, axis=0)) == len(codes)
    assert ids[:, -1].max() + 1 == report.max_group
    ranks = group_ranks(codes, policy, pop)
    for tup in np.unique(codes, axis=0):  # each group's ranks are 0..size-1, in the policy's order
        members = np.flatnonzero((codes == tup).all(axis=1))
        assert sorted(ranks[members].tolist()) == list(range(len(members)))
        by_rank = members[np.argsort(ranks[members])]
        if policy == "index":
            assert by_rank.tolist() == sorted(members.tolist())
        else:
            assert (np.diff(pop[by_rank]) <= 0).all()
