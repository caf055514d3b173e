"""User-supplied per-item feature matrices (``.npy`` or parquet), validated before anything trains on them.

A matrix has one row per item in internal-id order (``dataset.items`` order). A parquet file holds either

* an ``item`` column of external item ids plus numeric columns: rows are aligned to the dataset through
  ``item_ids`` (pass ``dataset.item_ids``); rows for items the dataset does not have are ignored (the dataset may
  be a k-core of the catalogue the features were made for), every dataset item must have one;
* or only numeric columns, in internal-id order.

Instead of numeric columns a parquet file may have a single list column (one vector per row), as written by
``pd.DataFrame({"item": ids, "embedding": list(matrix)})``.

Integer and float values are accepted and returned as float32; booleans, strings, objects and complex numbers
are refused. Every problem raises :class:`FeatureError` naming the file: missing or unreadable file, wrong
row count, missing items, non-2-D array, unexpected dtype, NaN or infinite values (with their count and first
row), and a width different from the expected one (:func:`check_dimension`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genir.errors import FeatureError


def load_feature_matrix(path: str | Path, num_items: int, name: str | None = None,
                        item_ids: Sequence | None = None) -> np.ndarray:
    """(num_items, d) float32 matrix read from ``path`` and validated (see the module docstring).

    ``name`` labels the features in messages (``image features /data/img.npy: ...``).
    """
    path = Path(path)
    where = f"{name} features {path}" if name else str(path)
    if not path.is_file():
        raise FeatureError(f"{where}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        matrix = _read_npy(path, where)
    elif suffix == ".parquet":
        matrix = _read_parquet(path, where, num_items, item_ids)
    else:
        raise FeatureError(f"{where}: unsupported file type '{suffix}' (expected .npy or .parquet)")

    if matrix.ndim != 2:
        raise FeatureError(f"{where}: expected a 2-D matrix (items x features), got {matrix.ndim}-D with shape "
                           f"{matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise FeatureError(f"{where}: unexpected dtype {matrix.dtype}; expected float or integer values")
    if matrix.shape[0] != num_items:
        raise FeatureError(f"{where}: has {matrix.shape[0]} rows, dataset has {num_items} items")
    if matrix.shape[1] == 0:
        raise FeatureError(f"{where}: has no feature columns")
    _check_finite(matrix, where, "")
    with np.errstate(over="ignore"):  # overflow is reported below, as a FeatureError
        out = np.ascontiguousarray(matrix, dtype=np.float32)
    _check_finite(out, where, " after conversion to float32 (values beyond +-3.4e38)")
    return out


def check_dimension(matrix: np.ndarray, expected_dim: int, path: str | Path) -> None:
    """Raise FeatureError when ``matrix`` does not have ``expected_dim`` columns (e.g. a model's input size)."""
    if matrix.ndim != 2 or matrix.shape[1] != expected_dim:
        got = f"{matrix.shape[1]} columns" if matrix.ndim == 2 else f"shape {matrix.shape}"
        raise FeatureError(f"{path}: has {got}, expected {expected_dim}")


def _read_npy(path: Path, where: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle, which is never loaded from a user file
        raise FeatureError(f"{where}: unexpected dtype or unreadable .npy ({exc})") from None
    except (OSError, EOFError) as exc:
        raise FeatureError(f"{where}: cannot read .npy: {exc}") from None


def _read_parquet(path: Path, where: str, num_items: int, item_ids: Sequence | None) -> np.ndarray:
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid / ArrowIOError derive from these
        raise FeatureError(f"{where}: cannot read parquet: {exc}") from None
    df.columns = [str(c) for c in df.columns]
    ids = None
    if "item" in df.columns:
        if item_ids is None:
            raise FeatureError(f"{where}: has an 'item' column of external ids; pass item_ids=dataset.item_ids "
                               "to align its rows with the dataset")
        ids = df["item"].astype(str).to_numpy()
        df = df.drop(columns="item")
    if df.shape[1] == 0:
        raise FeatureError(f"{where}: has no feature columns")
    matrix = _frame_values(df, where)
    if ids is None:
        return matrix
    return _align(matrix, ids, [str(x) for x in item_ids], where)


def _frame_values(df: pd.DataFrame, where: str) -> np.ndarray:
    """(rows, d) values of all-numeric columns, or of one list column."""
    if df.shape[1] == 1 and df.dtypes.iloc[0] == object and len(df) and _is_vector(df.iloc[0, 0]):
        col = df.columns[0]
        lengths = {len(v) if _is_vector(v) else -1 for v in df[col]}
        if len(lengths) != 1 or -1 in lengths:
            raise FeatureError(f"{where}: list column '{col}' has vectors of different lengths or non-list values")
        try:
            return np.stack([np.asarray(v) for v in df[col]])
        except ValueError as exc:
            raise FeatureError(f"{where}: list column '{col}' cannot be read as a matrix: {exc}") from None
    bad = [f"{c} ({t})" for c, t in df.dtypes.items()
           if not (pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t))]
    if bad:
        raise FeatureError(f"{where}: unexpected dtype in column(s) {bad}; feature columns must be numeric")
    if any(df[c].isna().any() for c in df.columns):  # nullable columns: missing values are NaN features
        return df.astype("float64").to_numpy(na_value=np.nan)
    return df.to_numpy()


def _align(matrix: np.ndarray, ids: np.ndarray, item_ids: list[str], where: str) -> np.ndarray:
    """Rows of ``matrix`` (labelled ``ids``) in the order of ``item_ids``."""
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise FeatureError(f"{where}: {len(dup)} duplicated item id(s) in column 'item' (first: {dup[0]!r})")
    pos = pd.Index(ids).get_indexer(item_ids)
    missing = np.flatnonzero(pos < 0)
    if len(missing):
        raise FeatureError(f"{where}: has no row for {len(missing)} of the dataset's {len(item_ids)} items "
                           f"(first missing item id: {item_ids[missing[0]]!r})")
    return matrix[pos]


def _check_finite(matrix: np.ndarray, where: str, note: str) -> None:
    if not np.issubdtype(matrix.dtype, np.floating):
        return
    bad_rows = ~np.isfinite(matrix).all(axis=1)
    if bad_rows.any():
        n_bad = int((~np.isfinite(matrix)).sum())
        raise FeatureError(f"{where}: {n_bad} NaN or infinite value(s){note} in {int(bad_rows.sum())} row(s); "
                           f"first at row {int(np.flatnonzero(bad_rows)[0])}")


def _is_vector(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))
