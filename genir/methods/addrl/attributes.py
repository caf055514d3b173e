"""Explicit item attributes that AD-DRL ties its factors to, built from a split's side information.

Each attribute is a (num_items, num_classes) matrix of target distributions: one-hot for a bucketed value,
uniform over the item's values for a multi-valued one (genres, a KG relation), an all-zero row where the item has
no value (that item is left out of the attribute loss). Popularity and rating use the training interactions only,
so no held-out interaction leaks into the targets.

* ``genre``: the dataset's genres (multi-valued; the paper's "category").
* ``year``: release-year quantile buckets (stand-in for the paper's price levels); a missing year gets the median.
* ``popularity``: quantile buckets of the training interaction count (the paper's sales-rank levels).
* ``rating``: quantile buckets of the mean training rating (items without a rated interaction have no value).
* ``kg:<relation>``: tail entities of the item's ``relation`` triples in the KG (e.g. ``kg:film.film.directed_by``),
  the ``kg_classes`` most frequent kept as classes and the others pooled as ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from genir.data.split import Split
from genir.errors import ConfigError

BUILT_IN = ("genre", "year", "popularity", "rating")


@dataclass
class Attribute:
    name: str
    classes: list[str]
    target: np.ndarray  # (num_items, num_classes) float32; rows sum to 1, or 0 where the item has no value
    multi_valued: bool  # several values per item (genres, KG tails) rather than one bucket

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def parse_attributes(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"attributes {spec!r}: give at least one of {BUILT_IN} or kg:<relation>")
    for n in names:
        if n not in BUILT_IN and not (n.startswith("kg:") and len(n) > 3):
            raise ConfigError(f"attributes: unknown attribute {n!r}; known: {', '.join(BUILT_IN)}, kg:<relation>")
    if len(set(names)) != len(names):
        raise ConfigError(f"attributes {spec!r}: an attribute is given twice")
    return names


def _buckets(values: np.ndarray, n: int, label: str) -> tuple[np.ndarray, list[str]]:
    """Quantile buckets of ``values`` (NaN = no value -> -1); ties never split, so there may be fewer than n."""
    ok = ~np.isnan(values)
    codes = np.full(len(values), -1, dtype=np.int64)
    cut, edges = pd.qcut(values[ok], n, labels=False, retbins=True, duplicates="drop")
    codes[ok] = cut
    names = [f"{label} {edges[i]:.4g}-{edges[i + 1]:.4g}" for i in range(len(edges) - 1)]
    return codes, names


def _one_hot(codes: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(codes), k), dtype=np.float32)
    ok = codes >= 0
    out[np.flatnonzero(ok), codes[ok]] = 1.0
    return out


def _multi(values: list[list[str]], classes: list[str]) -> np.ndarray:
    index = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(values), len(classes)), dtype=np.float32)
    for i, vs in enumerate(values):
        js = sorted({index[v] for v in vs if v in index})
        if js:
            out[i, js] = 1.0 / len(js)
    return out


def item_attributes(split: Split, spec: str, *, year_buckets: int = 5, popularity_buckets: int = 5,
                    rating_buckets: int = 5, kg_classes: int = 20) -> list[Attribute]:
    """The attributes named in ``spec`` (comma-separated), in that order."""
    ds = split.dataset
    n = ds.num_items
    train = split.train
    out = []
    for name in parse_attributes(spec):
        if name == "genre":
            if "genres" not in ds.items.columns:
                raise ConfigError(f"{ds.source or ds.name}: attribute 'genre' needs a genres column in the items")
            genres = list(ds.items["genres"])
            classes = sorted({g for gs in genres for g in gs})
            out.append(Attribute(name, classes, _multi(genres, classes), True))
        elif name == "year":
            if "year" not in ds.items.columns:
                raise ConfigError(f"{ds.source or ds.name}: attribute 'year' needs a year column in the items")
            year = pd.to_numeric(ds.items["year"], errors="coerce").astype(float).to_numpy()
            year = np.where(np.isnan(year), np.nanmedian(year), year)
            codes, classes = _buckets(year, year_buckets, "year")
            out.append(Attribute(name, classes, _one_hot(codes, len(classes)), False))
        elif name == "popularity":
            counts = np.bincount(train["item"].to_numpy(), minlength=n).astype(float)
            codes, classes = _buckets(counts, popularity_buckets, "interactions")
            out.append(Attribute(name, classes, _one_hot(codes, len(classes)), False))
        elif name == "rating":
            if "rating" not in train.columns:
                raise ConfigError(f"{ds.source or ds.name}: attribute 'rating' needs ratings in the interactions")
            mean = train.groupby("item")["rating"].mean().reindex(range(n)).to_numpy(dtype=float)
            codes, classes = _buckets(mean, rating_buckets, "mean rating")
            out.append(Attribute(name, classes, _one_hot(codes, len(classes)), False))
        else:
            out.append(_kg_attribute(split, name, kg_classes))
    return out


def _kg_attribute(split: Split, name: str, kg_classes: int) -> Attribute:
    from genir.features.kg import item_neighbours

    relation = name[3:]
    nb = item_neighbours(split.dataset)
    nb = nb[nb["relation"] == relation]
    if nb.empty:
        known = sorted(item_neighbours(split.dataset)["relation"].unique())
        raise ConfigError(f"attribute {name!r}: no item has a {relation!r} relation in the KG; relations: {known}")
    top = nb.groupby("entity")["item"].nunique().sort_values(ascending=False, kind="stable")
    classes = list(top.index[:kg_classes]) + (["other"] if len(top) > kg_classes else [])
    keep = set(classes)
    values = [[] for _ in range(split.num_items)]
    for item, entity in zip(nb["item"], nb["entity"]):
        values[item].append(entity if entity in keep else "other")
    return Attribute(name, classes, _multi(values, classes), True)
