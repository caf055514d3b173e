import numpy as np
import pandas as pd
import pytest

from genir.data import Dataset, k_core, leave_one_out, load_dataset, temporal_split
from genir.errors import DatasetError
from tests.conftest import make_inter


def test_ml100k_counts_side_info_and_kg(ml100k):
    d = ml100k.describe()
    assert (d["users"], d["items"], d["interactions"]) == (943, 1682, 100000)
    assert d["kg_triples"] == 91631
    assert d["linked_items"] > 1500
    toy = ml100k.item_index(1)
    assert ml100k.items["title"].iat[toy] == "Toy Story"
    assert int(ml100k.items["year"].iat[toy]) == 1995
    assert ml100k.items["genres"].iat[toy] == ["Animation", "Children's", "Comedy"]


def test_internal_ids_are_stable_and_round_trip(tiny_dataset):
    again = Dataset.from_frames("tiny", make_inter().sample(frac=1.0, random_state=7))
    assert list(again.user_ids) == list(tiny_dataset.user_ids)
    assert list(again.item_ids) == list(tiny_dataset.item_ids)
    for ext in tiny_dataset.item_ids[:5]:
        assert tiny_dataset.item_ids[tiny_dataset.item_index(ext)] == ext
    # numeric ids are ordered as numbers, not strings
    d = Dataset.from_frames("n", pd.DataFrame({"user": [1, 2], "item": ["10", "9"], "timestamp": [1, 2]}))
    assert list(d.item_ids) == ["9", "10"]


def test_interactions_sorted_by_time_ties_keep_file_order():
    inter = pd.DataFrame({"user": ["a", "a", "b", "a"], "item": ["x", "y", "z", "w"], "timestamp": [5, 3, 3, 1]})
    d = Dataset.from_frames("t", inter)
    assert d.inter["timestamp"].tolist() == [1, 3, 3, 5]
    # the two interactions at t=3 keep their file order: (a,y) before (b,z)
    assert [d.item_ids[i] for i in d.inter["item"]] == ["w", "y", "z", "x"]


def test_leave_one_out_is_last_two_by_time_and_disjoint(ml100k):
    s = leave_one_out(ml100k)
    inter = ml100k.inter
    assert len(s.test_rows) == len(s.valid_rows) == 943
    assert len(set(s.train_rows) | set(s.valid_rows) | set(s.test_rows)) == len(inter)
    assert not (set(s.train_rows) & set(s.test_rows)) and not (set(s.valid_rows) & set(s.test_rows))
    ts, users = inter["timestamp"].to_numpy(), inter["user"].to_numpy()
    test_t = np.zeros(943)
    test_t[users[s.test_rows]] = ts[s.test_rows]
    valid_t = np.zeros(943)
    valid_t[users[s.valid_rows]] = ts[s.valid_rows]
    # no training interaction of a user is later than that user's valid or test interaction
    assert (ts[s.train_rows] <= valid_t[users[s.train_rows]]).all()
    assert (valid_t <= test_t).all()
    # the test interaction never appears in the training data (row-wise) and seen masks exclude targets of the stage
    train_pairs = set(zip(users[s.train_rows], inter["item"].to_numpy()[s.train_rows]))
    test_pairs = set(zip(users[s.test_rows], inter["item"].to_numpy()[s.test_rows]))
    assert not (train_pairs & test_pairs)
    seen = s.seen_matrix("test")
    assert seen.multiply(s.target_matrix("test")).nnz == 0


def test_leave_one_out_short_users_stay_in_train():
    inter = pd.DataFrame({"user": ["a", "a", "b", "b", "b"], "item": ["x", "y", "x", "y", "z"],
                          "timestamp": [1, 2, 3, 4, 5]})
    s = leave_one_out(Dataset.from_frames("t", inter))
    assert len(s.train_rows) == 3 and len(s.valid_rows) == 1 and len(s.test_rows) == 1
    assert s.eval_users("test").tolist() == [1]


def test_histories_are_time_ordered(tiny_dataset):
    s = leave_one_out(tiny_dataset)
    inter = tiny_dataset.inter
    for u in range(3):
        rows = [r for r in s.known_rows("test") if inter["user"].iat[r] == u]
        assert s.histories("test")[u].tolist() == inter["item"].to_numpy()[rows].tolist()
        assert len(s.histories(None)[u]) == 10


def test_temporal_split_has_one_cutoff(ml100k):
    s = temporal_split(ml100k, 0.1, 0.1)
    ts = ml100k.inter["timestamp"].to_numpy()
    assert ts[s.train_rows].max() < ts[s.valid_rows].min()
    assert ts[s.valid_rows].max() < ts[s.test_rows].min()
    assert 0.75 < len(s.train_rows) / len(ts) < 0.85
    assert len(s.eval_users("test")) > 0


def test_k_core_reaches_fixed_point():
    inter = make_inter(n_users=60, n_items=30, per_user=6, seed=3)
    inter = pd.concat([inter, pd.DataFrame({"user": ["lonely"] * 2, "item": ["i0", "rare"], "timestamp": [1, 2]})])
    full = Dataset.from_frames("t", inter)
    d = k_core(full, 5)
    assert d.num_users < full.num_users and "rare" not in set(d.item_ids) and "lonely" not in set(d.user_ids)
    assert np.bincount(d.inter["user"]).min() >= 5
    assert np.bincount(d.inter["item"]).min() >= 5


def test_k_core_empty_raises_naming_source(tmp_path):
    p = tmp_path / "few.csv"
    p.write_text("user,item,timestamp\na,x,1\nb,y,2\n")
    with pytest.raises(DatasetError, match=r"few\.csv.*empty dataset after"):
        k_core(load_dataset(p), 5)


def test_fingerprint_changes_with_content(tiny_dataset):
    other = Dataset.from_frames("tiny", make_inter(seed=1))
    assert tiny_dataset.fingerprint() != other.fingerprint()
    assert tiny_dataset.fingerprint() == Dataset.from_frames("tiny", make_inter()).fingerprint()
