"""SemanticIdTable: exact stats on a hand-made table, lookups both ways and token offsets (hypothesis), save/load
round trip and the errors of malformed inputs and files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genir.ids import SemanticIdError, SemanticIdTable

HAND = np.array([[0, 0], [0, 1], [1, 0], [2, 1]])  # level 0 codes 0, 0, 1, 2 of 4; level 1 codes 0, 1, 0, 1 of 2


def test_stats_of_a_hand_made_table():
    s = SemanticIdTable(HAND, [4, 2], scheme="hand").stats()
    l0, l1 = s["levels"]
    assert (l0["used"], l0["utilisation"]) == (3, 0.75)
    assert l0["perplexity"] == pytest.approx(2 ** 1.5)  # p = (1/2, 1/4, 1/4): H = 1.5 ln 2
    assert (l1["used"], l1["utilisation"], l1["perplexity"]) == (2, 1.0, pytest.approx(2.0))
    assert s["num_items"] == 4 and s["id_length"] == 2 and s["vocab_size"] == 6
    assert s["collision_rate"] == 0.0 and s["max_group"] == 1


def test_stats_report_collisions_of_the_semantic_levels_only():
    codes = [[5, 5], [5, 5], [5, 5], [1, 1]]
    table = SemanticIdTable.from_semantic_codes(codes, [8, 8], "index")
    s = table.stats()
    assert table.codes[:, 2].tolist() == [0, 1, 2, 0]
    assert s["collision_rate"] == pytest.approx(0.5) and s["colliding_fraction"] == pytest.approx(0.75)
    assert s["max_group"] == 3 and s["num_unique_semantic"] == 2 and s["id_length"] == 3
    assert [lv["semantic"] for lv in s["levels"]] == [True, True, False]
    assert s["levels"][2]["perplexity"] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))


def test_lookups_and_tokens_on_the_hand_made_table():
    t = SemanticIdTable(HAND, [4, 2])
    assert t.codes_of([3, 0]).tolist() == [[2, 1], [0, 0]]
    assert t.items_of([[1, 0], [3, 1], [2, 1], [9, 0], [-1, 0]]).tolist() == [2, -1, 3, -1, -1]
    assert int(t.items_of([0, 1])) == 1
    assert t.offsets.tolist() == [0, 4]
    assert t.to_tokens(HAND).tolist() == [[0, 4], [0, 5], [1, 4], [2, 5]]
    assert t.to_tokens([[3]]).tolist() == [[3]]  # a prefix
    assert t.from_tokens([[2, 5]]).tolist() == [[2, 1]]
    with pytest.raises(SemanticIdError, match="token 3 at position 1 is not a level-1 token \\(expected 4..5\\)"):
        t.from_tokens([[0, 3]])
    with pytest.raises(SemanticIdError, match="code 2 at level 1 is outside \\[0, 2\\)"):
        t.to_tokens([[0, 2]])
    with pytest.raises(IndexError, match="item index 4 out of range for 4 items"):
        t.codes_of([4])
    with pytest.raises(ValueError, match="tuples of length 2"):
        t.items_of([[0, 0, 0]])


def test_invalid_tables_are_refused():
    with pytest.raises(SemanticIdError, match=r"IDs are not unique: 1 repeated, e.g. items 0 and 2 both have \[1, 1\]"):
        SemanticIdTable([[1, 1], [0, 1], [1, 1]])
    with pytest.raises(SemanticIdError, match="item 1 has code 4 at level 0, whose size is 4"):
        SemanticIdTable([[0, 0], [4, 0]], [4, 2])
    with pytest.raises(SemanticIdError, match="level_sizes \\[4\\] must be 2 positive sizes"):
        SemanticIdTable(HAND, [4])
    with pytest.raises(SemanticIdError, match="do not fit int64 keys"):
        SemanticIdTable([[0, 0, 0]], [2**31, 2**31, 2**31])


def test_save_load_round_trip(tmp_path):
    t = SemanticIdTable.from_semantic_codes([[3, 1], [3, 1], [0, 2]], [4, 4], "index", scheme="rq_kmeans")
    t.save(tmp_path / "ids")
    assert np.load(tmp_path / "ids" / "ids.npy").dtype == np.int32
    assert not list((tmp_path / "ids").glob(".*tmp"))  # no temporary files left behind
    back = SemanticIdTable.load(tmp_path / "ids")
    np.testing.assert_array_equal(back.codes, t.codes)
    assert (back.level_sizes, back.semantic_levels, back.scheme) == ([4, 4, 2], 2, "rq_kmeans")
    assert back.stats() == t.stats()


def test_load_names_the_bad_file(tmp_path):
    with pytest.raises(SemanticIdError, match=f"{tmp_path}/table.json: not found"):
        SemanticIdTable.load(tmp_path)
    SemanticIdTable(HAND, [4, 2]).save(tmp_path)
    np.save(tmp_path / "ids.npy", HAND[:3].astype(np.int32))
    with pytest.raises(SemanticIdError, match=r"ids.npy: int32 array of shape \(3, 2\); .*table.json says int32 \(4, 2\)"):
        SemanticIdTable.load(tmp_path)
    meta = json.loads((tmp_path / "table.json").read_text())
    (tmp_path / "table.json").write_text(json.dumps({**meta, "level_sizes": "4,2"}))
    with pytest.raises(SemanticIdError, match="table.json: field 'level_sizes' missing or not a list"):
        SemanticIdTable.load(tmp_path)


@st.composite
def tables(draw):
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    rows = draw(st.lists(st.tuples(*[st.integers(0, k - 1) for k in sizes]), min_size=1, max_size=50, unique=True))
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(sizes)), sizes


@settings(max_examples=80, deadline=None)
@given(data=tables(), seed=st.integers(0, 2**16))
def test_lookups_are_inverse_of_each_other(data, seed):
    codes, sizes = data
    t = SemanticIdTable(codes, sizes)
    n = len(codes)
    np.testing.assert_array_equal(t.items_of(t.codes_of(np.arange(n))), np.arange(n))
    rng = np.random.default_rng(seed)
    queries = np.stack([rng.integers(-1, k + 1, size=30) for k in sizes], axis=1)  # some out of range
    found = t.items_of(queries)
    known = {tuple(r): i for i, r in enumerate(codes.tolist())}
    assert found.tolist() == [known.get(tuple(q), -1) for q in queries.tolist()]
    tokens = t.to_tokens(codes)
    assert tokens.min() >= 0 and tokens.max() < t.vocab_size
    for level in range(len(sizes)):  # each level owns its own token range
        assert (tokens[:, level] >= t.offsets[level]).all() and (tokens[:, level] < t.offsets[level] + sizes[level]).all()
    np.testing.assert_array_equal(t.from_tokens(tokens), codes)
