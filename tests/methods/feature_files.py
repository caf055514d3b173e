"""One check shared by every method that reads user-supplied per-item feature files."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from genir.errors import FeatureError


def assert_feature_file_errors(tmp_path, num_items: int, build: Callable[[str, str | None], object]):
    """``build(modalities, dims)`` builds the method from a modality spec (``"img=/path.npy"``) and an optional
    expected-width spec (``"img=5"``). A file with the wrong number of rows, a NaN, or a width different from the
    expected one must raise FeatureError naming the file and the problem; a good file builds. Returns that model."""
    rows = tmp_path / "rows.npy"
    np.save(rows, np.ones((num_items + 2, 4), dtype=np.float32))
    with pytest.raises(FeatureError, match=rf"rows\.npy: has {num_items + 2} rows, dataset has {num_items} items"):
        build(f"img={rows}", None)
    nan = tmp_path / "nan.npy"
    bad = np.ones((num_items, 4), dtype=np.float32)
    bad[3, 1] = np.nan
    np.save(nan, bad)
    with pytest.raises(FeatureError, match=r"nan\.npy: 1 NaN or infinite value"):
        build(f"img={nan}", None)
    good = tmp_path / "good.npy"
    np.save(good, np.ones((num_items, 4), dtype=np.float32))
    with pytest.raises(FeatureError, match=r"good\.npy: has 4 columns, expected 5"):
        build(f"img={good}", "img=5")
    return build(f"img={good}", None)
