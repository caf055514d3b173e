"""Knowledge-graph embeddings of items: TF-IDF over (relation, entity) neighbours, reduced by truncated SVD.

Each linked item is described by the set of its one-hop neighbours in the KG: ``(relation, tail)`` for triples
where the item's entity is the head and ``(relation^-1, head)`` where it is the tail. Freebase stores most film
relations in both directions (``film.film.genre`` and ``film.film_genre.films_in_this_genre``), so an incoming
relation whose reversed triples are (>= 90 %) those of another relation is renamed to it and the duplicate
neighbour is counted once; otherwise bidirectional relations would weigh twice as much as one-way ones
(``film.film.actor`` has no reverse in the ml-100k KG). Neighbours shared by fewer than ``min_df`` items say
nothing about similarity between items and are dropped. The binary item x neighbour matrix is TF-IDF weighted
(scikit-learn's smooth idf, rows L2-normalized), reduced to ``dim`` columns with TruncatedSVD and L2-normalized,
so cosine similarity ~ weighted share of neighbours.

Items with no entity link or no kept neighbour get all-zero rows (cosine 0 with everything); callers that need a
vector for every item should fall back on another feature for them (see :func:`kg_coverage`). When the matrix is
smaller than ``dim`` in either direction the exact SVD is used and the missing columns are zero.

On ml-100k (1,682 items, 91,631 triples): 1,598 items (95.0 %) are linked and all of them have triples; with
``min_df=2`` 8,775 of 35,046 distinct neighbours are kept and 1,596 items (94.9 %) have at least one, so 86
items (5.1 %) get zero rows (84 unlinked, 2 whose neighbours are all unique to them).

Warning, ml-100k: the ``ml-100k.link`` shipped with RecBole links most items to the wrong Freebase film (known
upstream, RUCAIBox/RecSysDatasets#130: Titanic -> The Swan Princess). Here "Godfather, The" and "Godfather:
Part II" share no neighbour, ``film.film.sequel`` edges join unrelated titles (North by Northwest -> It Takes
Two), KG genre entities overlap the MovieLens genres only at chance level, and the top-10 KG neighbours of an
item are its co-consumed items no more often than random ones. The embedding is faithful to the KG; on this
link file the KG says little about the items, so do not read ml-100k KG results as evidence about KG features.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfTransformer

from genir.data.dataset import Dataset
from genir.errors import FeatureError
from genir.features.cache import cached

INVERSE_SUFFIX = "^-1"
INVERSE_MIN_SHARE = 0.9  # share of a relation's reversed triples that another relation must hold to be its inverse


def inverse_relations(kg: pd.DataFrame) -> dict[str, str]:
    """``{r2: r1}`` when (t, r1, h) is in the KG for at least 90 % of the triples (h, r2, t)."""
    rev = kg.rename(columns={"head": "tail", "tail": "head", "relation": "r2"})
    both = kg.merge(rev, on=["head", "tail"])  # each row: (h, r1, t) and (t, r2, h) both exist
    if both.empty:
        return {}
    pairs = both.groupby(["r2", "relation"]).size().rename("n").reset_index()
    best = pairs.sort_values(["n", "relation"], ascending=[False, True], kind="stable").drop_duplicates("r2")
    sizes = kg["relation"].value_counts()
    keep = best["n"].to_numpy() >= INVERSE_MIN_SHARE * sizes.reindex(best["r2"]).to_numpy()
    return dict(zip(best["r2"][keep], best["relation"][keep]))


def item_neighbours(dataset: Dataset) -> pd.DataFrame:
    """Distinct ``item, relation, entity`` rows: the one-hop neighbours of each linked item (see module doc)."""
    kg, link = _require_kg(dataset)
    link = link[["item", "entity"]]
    out = link.merge(kg, left_on="entity", right_on="head")[["item", "relation", "tail"]]
    out = out.rename(columns={"tail": "neighbour"})
    inc = link.merge(kg, left_on="entity", right_on="tail")[["item", "relation", "head"]]
    inc = inc.rename(columns={"head": "neighbour"})
    inverse = inverse_relations(kg)
    inc["relation"] = [inverse.get(r, r + INVERSE_SUFFIX) for r in inc["relation"]]
    both = pd.concat([out, inc], ignore_index=True).drop_duplicates()
    return both.rename(columns={"neighbour": "entity"}).reset_index(drop=True)


def kg_incidence(dataset: Dataset, min_df: int = 2) -> tuple[sp.csr_matrix, list[tuple[str, str]]]:
    """Binary (num_items, num_features) matrix of kept neighbours and the (relation, entity) of each column."""
    nb = item_neighbours(dataset)  # distinct rows, so a feature's row count is its document frequency
    key = nb["relation"] + "\x00" + nb["entity"]
    nb = nb[key.map(key.value_counts()).to_numpy() >= min_df]
    cols, uniques = pd.factorize(nb["relation"] + "\x00" + nb["entity"], sort=True)
    features = [tuple(u.split("\x00", 1)) for u in uniques]
    x = sp.csr_matrix((np.ones(len(nb), dtype=np.float32), (nb["item"].to_numpy(), cols)),
                      shape=(dataset.num_items, len(features)))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x, features


def kg_coverage(dataset: Dataset, min_df: int = 2) -> dict:
    """How many items the KG embedding describes: linked, with any triple, with a kept neighbour (non-zero row)."""
    kg, link = _require_kg(dataset)
    ents = set(kg["head"]) | set(kg["tail"])
    x, features = kg_incidence(dataset, min_df)
    n = dataset.num_items
    covered = int((np.diff(x.indptr) > 0).sum())
    return {
        "items": n,
        "linked": int(link["item"].nunique()),
        "with_triples": int(link.loc[link["entity"].isin(ents), "item"].nunique()),
        "covered": covered,
        "covered_fraction": covered / n if n else 0.0,
        "features": len(features),
    }


def kg_embeddings(dataset: Dataset, dim: int = 64, seed: int = 0, cache: bool = True,
                  min_df: int = 2) -> np.ndarray:
    """(num_items, dim) float32 item embeddings from the KG; unit rows, zero rows for uncovered items."""
    if dim < 1:
        raise FeatureError(f"kg features: dim must be >= 1, got {dim}")
    kg, link = _require_kg(dataset)
    params = {"dim": int(dim), "seed": int(seed), "min_df": int(min_df), "kg_sha256": _kg_hash(kg, link),
              "method": "tfidf-svd"}

    def compute() -> np.ndarray:
        x, _ = kg_incidence(dataset, min_df)
        z = _reduce(TfidfTransformer(norm="l2", smooth_idf=True).fit_transform(x), dim, seed)
        norms = np.linalg.norm(z, axis=1, keepdims=True)
        return np.where(norms > 0, z / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    if not cache:
        return compute()
    return cached("kg", params, dataset.fingerprint(), compute)


def _reduce(x: sp.csr_matrix, dim: int, seed: int) -> np.ndarray:
    """(n, dim) = U S of the rank-``dim`` SVD of x; exact and zero-padded when x is too small for TruncatedSVD."""
    n, m = x.shape
    if min(n, m) <= dim:
        u, s, _ = np.linalg.svd(x.toarray().astype(np.float64), full_matrices=False)
        z = np.zeros((n, dim))
        k = min(dim, len(s))
        z[:, :k] = u[:, :k] * s[:k]
        return z
    return TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=seed).fit_transform(x)


def _require_kg(dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    where = dataset.source or dataset.name
    if dataset.kg is None or len(dataset.kg) == 0:
        raise FeatureError(f"{where}: dataset has no knowledge graph (no kg triples); kg features need one")
    missing = [c for c in ("head", "relation", "tail") if c not in dataset.kg.columns]
    if missing:
        raise FeatureError(f"{where}: kg is missing column(s) {missing} (have {list(dataset.kg.columns)})")
    if dataset.item_entity is None or len(dataset.item_entity) == 0:
        raise FeatureError(f"{where}: no item is linked to a kg entity (no link file); kg features need links")
    kg = dataset.kg[["head", "relation", "tail"]].astype(str)
    link = dataset.item_entity.astype({"entity": str})
    return kg, link


def _kg_hash(kg: pd.DataFrame, link: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for frame in (kg, link):
        for col in frame.columns:
            h.update("\x00".join(map(str, frame[col])).encode())
            h.update(b"\x01")
    return h.hexdigest()
