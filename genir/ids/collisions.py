"""Collision handling: make semantic code tuples unique with one extra level.

Several items can share a semantic tuple (c_1..c_L). TIGER tells them apart with a last token equal to the
item's position 0, 1, 2... inside its collision group; MMGRec does the same but orders each group by training
popularity, most popular first (and 1-based; genir is 0-based everywhere); RecBole3.0 refuses colliding IDs. The
policies:

* ``"index"`` - position in the group by item index (TIGER);
* ``"popularity"`` - most popular first, ties by item index (MMGRec), given a popularity vector;
* ``"none"`` - no extra level; duplicate tuples raise :class:`SemanticIdError`.

With ``index`` / ``popularity`` the extra level is always appended, even when nothing collides (it is then all
zeros), so every ID of a scheme has length L_sem + 1 whatever the data; its size is the largest group. Not
implemented: LC-Rec's Sinkhorn re-assignment of the last semantic level.

The :class:`CollisionReport` describes the tuples *before* this step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from genir.ids.base import SemanticIdError, as_codes

POLICIES = ("index", "popularity", "none")


@dataclass(frozen=True)
class CollisionReport:
    """How much the semantic tuples of N items collide (before the extra level)."""

    num_items: int
    num_unique: int  # distinct semantic tuples
    collision_rate: float  # 1 - num_unique / num_items: IDs lost to collisions
    colliding_fraction: float  # fraction of items whose tuple is shared with at least one other item
    max_group: int  # most items sharing one tuple (1 = no collision)
    num_shared_tuples: int  # tuples held by two or more items

    def to_dict(self) -> dict:
        return asdict(self)


def collision_report(codes) -> CollisionReport:
    """:class:`CollisionReport` of an (N, L) code matrix."""
    codes = as_codes(codes)
    _, counts = _groups(codes)
    n = len(codes)
    shared = counts[counts > 1]
    return CollisionReport(
        num_items=n,
        num_unique=len(counts),
        collision_rate=1.0 - len(counts) / n if n else 0.0,
        colliding_fraction=float(shared.sum()) / n if n else 0.0,
        max_group=int(counts.max()) if n else 0,
        num_shared_tuples=len(shared),
    )


def group_ranks(codes, policy: str = "index", popularity=None) -> np.ndarray:
    """(N,) int64 position of each item inside the group of items sharing its tuple, 0-based, ordered by item
    index (``index``) or by descending ``popularity`` then item index (``popularity``)."""
    codes = as_codes(codes)
    n = len(codes)
    inverse, _ = _groups(codes)
    if policy == "index":
        order = np.argsort(inverse, kind="stable")  # groups together, item index order inside
    elif policy == "popularity":
        pop = _check_popularity(popularity, n)
        order = np.lexsort((np.arange(n), -pop, inverse))  # last key is primary: group, then popularity desc
    else:
        raise ValueError(f"group_ranks: policy must be 'index' or 'popularity', got {policy!r}")
    sorted_groups = inverse[order]
    first = np.searchsorted(sorted_groups, sorted_groups, side="left")  # start of each item's group
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n) - first
    return ranks


def resolve_collisions(codes, policy: str = "index", popularity=None,
                       where: str = "codes") -> tuple[np.ndarray, CollisionReport]:
    """(unique IDs, report before the step). ``index`` / ``popularity``: (N, L + 1) with the group rank as the
    last level; ``none``: the (N, L) codes unchanged, or :class:`SemanticIdError` if two items share a tuple."""
    if policy not in POLICIES:
        raise ValueError(f"collision policy must be one of {list(POLICIES)}, got {policy!r}")
    codes = as_codes(codes, where)
    report = collision_report(codes)
    if policy == "none":
        if report.max_group > 1:
            inverse, counts = _groups(codes)
            example = np.flatnonzero(inverse == int(np.argmax(counts)))[:5]
            raise SemanticIdError(
                f"{where}: collision policy 'none' but {report.num_items - report.num_unique} of "
                f"{report.num_items} items repeat another item's tuple (largest group: {report.max_group} items, "
                f"e.g. items {example.tolist()} share {codes[example[0]].tolist()}); use collision 'index' or "
                "'popularity', or a scheme with more codes")
        return codes, report
    ranks = group_ranks(codes, policy, popularity)
    return np.concatenate([codes, ranks[:, None]], axis=1), report


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group id of each row (N,), size of each group (G,)); groups are the distinct rows."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _check_popularity(popularity, n: int) -> np.ndarray:
    if popularity is None:
        raise ValueError("collision policy 'popularity' needs a popularity vector (one value per item, e.g. "
                         "training interaction counts)")
    pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
    if len(pop) != n:
        raise ValueError(f"popularity has {len(pop)} values for {n} items")
    if not np.isfinite(pop).all():
        raise ValueError("popularity has NaN or infinite values")
    return pop
