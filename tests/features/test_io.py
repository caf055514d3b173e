"""load_feature_matrix / check_dimension: good files load as float32 in dataset order; every bad input raises
FeatureError naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genir.errors import FeatureError
from genir.features import check_dimension, load_feature_matrix

N = 6


@pytest.fixture
def matrix():
    return np.arange(N * 4, dtype=np.float64).reshape(N, 4) / 3


def _raises(path, match, **kw):
    with pytest.raises(FeatureError, match=match) as info:
        load_feature_matrix(path, kw.pop("num_items", N), **kw)
    assert str(path) in str(info.value)
    return str(info.value)


def test_npy_roundtrip(tmp_path, matrix):
    p = tmp_path / "f.npy"
    np.save(p, matrix)
    out = load_feature_matrix(p, N)
    assert out.dtype == np.float32 and out.shape == (N, 4)
    assert np.allclose(out, matrix)
    np.save(p, np.arange(N * 2, dtype=np.int16).reshape(N, 2))  # integers are accepted
    assert load_feature_matrix(p, N).dtype == np.float32


def test_parquet_positional_and_by_item_id(tmp_path, matrix):
    p = tmp_path / "f.parquet"
    pd.DataFrame(matrix, columns=list("abcd")).to_parquet(p)
    assert np.allclose(load_feature_matrix(p, N), matrix)
    ids = ["10", "20", "30", "40", "50", "60"]
    shuffled = [3, 0, 5, 1, 4, 2]
    df = pd.DataFrame(matrix[shuffled], columns=list("abcd"))
    df.insert(0, "item", [int(ids[i]) for i in shuffled])  # integer ids in the file, str in the dataset
    extra = pd.DataFrame([[999] + [0.0] * 4], columns=["item", *"abcd"])  # an item the dataset lacks: ignored
    pd.concat([df, extra]).to_parquet(p)
    assert np.allclose(load_feature_matrix(p, N, item_ids=np.array(ids, dtype=object)), matrix)
    pd.DataFrame({"item": ids, "embedding": list(matrix)}).to_parquet(p)  # one list column
    assert np.allclose(load_feature_matrix(p, N, item_ids=ids), matrix)


def test_missing_file(tmp_path):
    msg = _raises(tmp_path / "nope.npy", "file not found")
    assert "nope.npy" in msg


def test_named_features_in_message(tmp_path):
    p = tmp_path / "nope.npy"
    with pytest.raises(FeatureError, match=r"^image features .*nope\.npy: file not found"):
        load_feature_matrix(p, N, name="image")


def test_wrong_row_count(tmp_path):
    p = tmp_path / "f.npy"
    np.save(p, np.zeros((1680, 8), dtype=np.float32))
    _raises(p, "has 1680 rows, dataset has 1682 items", num_items=1682)
    q = tmp_path / "f.parquet"
    pd.DataFrame(np.zeros((N - 1, 2))).rename(columns=str).to_parquet(q)
    _raises(q, f"has {N - 1} rows, dataset has {N} items")


def test_non_finite_values(tmp_path, matrix):
    m = matrix.copy()
    m[2, 1] = np.nan
    m[4, 0] = np.inf
    m[4, 3] = -np.inf
    p = tmp_path / "f.npy"
    np.save(p, m)
    _raises(p, r"3 NaN or infinite value\(s\) in 2 row\(s\); first at row 2")
    q = tmp_path / "f.parquet"
    pd.DataFrame(m, columns=list("abcd")).to_parquet(q)
    _raises(q, "first at row 2")
    np.save(p, np.full((N, 2), 1e300))  # finite float64, infinite once float32
    _raises(p, "after conversion to float32")


def test_not_two_dimensional(tmp_path):
    p = tmp_path / "f.npy"
    np.save(p, np.zeros(N, dtype=np.float32))
    _raises(p, "expected a 2-D matrix .* got 1-D")
    np.save(p, np.zeros((N, 2, 2), dtype=np.float32))
    _raises(p, "got 3-D")


def test_unexpected_dtype(tmp_path):
    p = tmp_path / "f.npy"
    np.save(p, np.ones((N, 2), dtype=bool))
    _raises(p, "unexpected dtype bool")
    np.save(p, np.array([["a", "b"]] * N))
    _raises(p, "unexpected dtype <U1")
    np.save(p, np.ones((N, 2), dtype=complex))
    _raises(p, "unexpected dtype complex128")
    np.save(p, np.array([[object(), 1]] * N, dtype=object), allow_pickle=True)
    _raises(p, "unexpected dtype or unreadable")
    q = tmp_path / "f.parquet"
    pd.DataFrame({"a": np.ones(N), "b": ["x"] * N}).to_parquet(q)
    _raises(q, r"unexpected dtype in column\(s\) \['b ")


def test_unreadable_and_unsupported(tmp_path):
    p = tmp_path / "f.npy"
    p.write_bytes(b"\x93NUMPY garbage")
    _raises(p, "unreadable|cannot read")
    q = tmp_path / "f.parquet"
    q.write_bytes(b"PAR1 not really")
    _raises(q, "cannot read parquet")
    c = tmp_path / "f.csv"
    c.write_text("a,b\n1,2\n")
    _raises(c, "unsupported file type '.csv'")


def test_parquet_item_column_problems(tmp_path, matrix):
    p = tmp_path / "f.parquet"
    ids = ["10", "20", "30", "40", "50", "60"]
    df = pd.DataFrame(matrix, columns=list("abcd"))
    df.insert(0, "item", ids)
    df.to_parquet(p)
    _raises(p, "pass item_ids=dataset.item_ids")
    df.iloc[:-1].to_parquet(p)
    _raises(p, "no row for 1 of the dataset's 6 items .first missing item id: '60'", item_ids=ids)
    df.assign(item=["10", "10", "30", "40", "50", "60"]).to_parquet(p)
    _raises(p, "1 duplicated item id.* '10'", item_ids=ids)
    df[["item"]].to_parquet(p)
    _raises(p, "no feature columns", item_ids=ids)


def test_check_dimension(tmp_path):
    check_dimension(np.zeros((3, 8)), 8, tmp_path / "f.npy")
    with pytest.raises(FeatureError, match=r"f\.npy: has 8 columns, expected 384"):
        check_dimension(np.zeros((3, 8)), 384, tmp_path / "f.npy")
    with pytest.raises(FeatureError, match=r"f\.npy: has shape \(3,\), expected 4"):
        check_dimension(np.zeros(3), 4, tmp_path / "f.npy")
