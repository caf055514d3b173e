"""Modality specs: parsing, user files validated with the file named, dimension checks."""

import numpy as np
import pytest

from genir.data import Dataset, leave_one_out
from genir.errors import FeatureError
from genir.features.modalities import load_modalities, parse_modalities


def _split():
    import pandas as pd

    rows = [(u, i, t) for u in range(6) for t, i in enumerate(range(u, u + 5))]
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).astype({"user": str, "item": str})
    return leave_one_out(Dataset.from_frames("tiny", inter))


def test_parse():
    assert parse_modalities("text, kg,img=/a/b.npy") == [("text", None), ("kg", None), ("img", "/a/b.npy")]
    with pytest.raises(FeatureError, match="twice"):
        parse_modalities("text,text")
    with pytest.raises(FeatureError, match="no modality"):
        parse_modalities(" , ")


def test_user_files_validated(tmp_path):
    split = _split()
    n = split.num_items
    good = tmp_path / "img.npy"
    np.save(good, np.ones((n, 3), dtype=np.float32))
    out = load_modalities(split, f"img={good}")
    assert list(out) == ["img"] and out["img"].shape == (n, 3)
    rows = tmp_path / "rows.npy"
    np.save(rows, np.ones((n + 1, 3)))
    with pytest.raises(FeatureError, match=r"rows.npy.*rows"):
        load_modalities(split, f"img={rows}")
    nan = tmp_path / "nan.npy"
    bad = np.ones((n, 3))
    bad[1, 2] = np.nan
    np.save(nan, bad)
    with pytest.raises(FeatureError, match="nan.npy"):
        load_modalities(split, f"img={nan}")
    with pytest.raises(FeatureError, match=r"img.npy: has 3 columns, expected 4"):
        load_modalities(split, f"img={good}", dims={"img": 4})
    with pytest.raises(FeatureError, match="unknown modality 'audio'"):
        load_modalities(split, "audio")
