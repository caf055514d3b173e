"""Filtering and train/valid/test splits.

* :func:`k_core` keeps users and items with at least ``k`` interactions, repeated until stable.
* :func:`leave_one_out` (the default and the protocol of every headline table): per user, by time, the last
  interaction is test, the second last is valid, the rest train. Users with fewer than 3 interactions keep all
  of them in train.
* :func:`temporal_split`: one global cut-off time for everyone (two quantiles of the timestamps), which avoids
  the leakage of leave-one-out described by Ji et al. (TOIS 2023): no training interaction happens after a test
  interaction of another user.
* :func:`random_split`: the MMRec toolkit's protocol, used by the multimodal papers (MMGRec, MIG-GT, AD-DRL,
  MetaMMF): each user's interactions are shuffled and cut 80/10/10, so valid and test hold several items per
  user, order plays no part, and both stages see the training interactions only (MMRec's evaluation masks and
  models use the training part, not validation, when testing).

A :class:`Split` answers what every model and evaluator needs: the training interactions, the targets of a
stage, the items a user has already seen before a stage (masked at ranking time) and the ordered histories.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genir.data.dataset import Dataset
from genir.errors import ConfigError, DatasetError

STAGES = ("valid", "test")


def k_core(dataset: Dataset, k: int = 5, user_k: int | None = None, item_k: int | None = None) -> Dataset:
    """Keep users with >= user_k and items with >= item_k interactions (both default to k), iterated to a
    fixed point. Raises DatasetError if nothing is left."""
    user_k = k if user_k is None else user_k
    item_k = k if item_k is None else item_k
    inter = dataset.inter
    keep = np.ones(len(inter), dtype=bool)
    while True:
        u = inter["user"].to_numpy()[keep]
        i = inter["item"].to_numpy()[keep]
        ucount = np.bincount(u, minlength=dataset.num_users)
        icount = np.bincount(i, minlength=dataset.num_items)
        new_keep = keep & (ucount[inter["user"].to_numpy()] >= user_k) & (icount[inter["item"].to_numpy()] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise DatasetError(
            f"{dataset.source or dataset.name}: empty dataset after {user_k}/{item_k}-core filtering "
            f"(had {dataset.num_interactions} interactions)"
        )
    return dataset.subset(keep)


@dataclass
class Split:
    """Three disjoint sets of interactions over one dataset (positions into ``dataset.inter``)."""

    dataset: Dataset
    train_rows: np.ndarray
    valid_rows: np.ndarray
    test_rows: np.ndarray
    protocol: str
    cutoff: float | None = None  # global temporal split: training interactions are strictly before this time
    test_sees_valid: bool = True  # whether test-time inputs and masks include the valid interactions
    details: dict | None = None  # protocol-specific counts (e.g. users kept whole in train), shown by describe()

    stages = STAGES  # the evaluation protocol interface shared with genir.data.tasks.QueryRetrievalTask

    # -- frames ------------------------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return self.dataset.num_users

    @property
    def num_items(self) -> int:
        return self.dataset.num_items

    def frame(self, part: str) -> pd.DataFrame:
        rows = {"train": self.train_rows, "valid": self.valid_rows, "test": self.test_rows}[part]
        return self.dataset.inter.iloc[rows]

    @property
    def train(self) -> pd.DataFrame:
        return self.frame("train")

    def _check_stage(self, stage: str) -> None:
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")

    def known_rows(self, stage: str) -> np.ndarray:
        """Rows a model may use as input when predicting ``stage``: train for valid; train + valid for test (train
        only for a protocol whose test does not see validation, :func:`random_split`)."""
        self._check_stage(stage)
        if stage == "valid" or not self.test_sees_valid:
            return self.train_rows
        return np.sort(np.concatenate([self.train_rows, self.valid_rows]))

    # -- matrices ----------------------------------------------------------------------------------------------
    def _matrix(self, rows: np.ndarray) -> sp.csr_matrix:
        inter = self.dataset.inter
        u = inter["user"].to_numpy()[rows]
        i = inter["item"].to_numpy()[rows]
        m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (u, i)), shape=(self.num_users, self.num_items))
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def train_matrix(self) -> sp.csr_matrix:
        """Binary user x item matrix of the training interactions."""
        return self._matrix(self.train_rows)

    def seen_matrix(self, stage: str) -> sp.csr_matrix:
        """Items each user interacted with before ``stage``: masked out of the ranking (RecBole's convention)."""
        return self._matrix(self.known_rows(stage))

    def target_matrix(self, stage: str) -> sp.csr_matrix:
        self._check_stage(stage)
        return self._matrix(self.valid_rows if stage == "valid" else self.test_rows)

    def eval_users(self, stage: str) -> np.ndarray:
        """Users with at least one target in ``stage`` (only they are evaluated)."""
        t = self.target_matrix(stage)
        return np.flatnonzero(np.diff(t.indptr) > 0)

    # -- sequences ---------------------------------------------------------------------------------------------
    def histories(self, stage: str | None = None) -> list[np.ndarray]:
        """Per user, the time-ordered item ids known before ``stage`` (``None``: the training rows)."""
        rows = self.train_rows if stage is None else self.known_rows(stage)
        inter = self.dataset.inter
        u = inter["user"].to_numpy()[rows]
        i = inter["item"].to_numpy()[rows]
        order = np.argsort(u, kind="stable")  # rows are time-sorted, so a stable sort keeps time order per user
        u, i = u[order], i[order]
        bounds = np.searchsorted(u, np.arange(self.num_users + 1))
        return [i[bounds[k]:bounds[k + 1]] for k in range(self.num_users)]

    @property
    def catalogue(self):
        """The dataset's :class:`~genir.data.catalogue.Catalogue` (items and their side columns)."""
        return self.dataset.catalogue

    def fingerprint(self) -> str:
        """sha256 of the three parts' rows: equal for the same dataset split the same way."""
        h = hashlib.sha256(self.dataset.fingerprint().encode())
        for rows in (self.train_rows, self.valid_rows, self.test_rows):
            h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()

    def describe(self) -> dict:
        return {
            "protocol": self.protocol,
            "cutoff": self.cutoff,
            "train": len(self.train_rows),
            "valid": len(self.valid_rows),
            "test": len(self.test_rows),
            "valid_users": len(self.eval_users("valid")),
            "test_users": len(self.eval_users("test")),
            **(self.details or {}),
        }


def leave_one_out(dataset: Dataset) -> Split:
    """Per user by time: last -> test, second last -> valid, rest -> train (users with < 3 keep all in train)."""
    u = dataset.inter["user"].to_numpy()
    n = len(u)
    order = np.argsort(u, kind="stable")  # per user, rows stay in time order
    su = u[order]
    counts = np.bincount(su, minlength=dataset.num_users)
    end = np.cumsum(counts)  # exclusive end of each user's block in `order`
    pos_from_end = end[su] - np.arange(n)  # 1 for the user's last interaction
    eligible = counts[su] >= 3
    test = order[eligible & (pos_from_end == 1)]
    valid = order[eligible & (pos_from_end == 2)]
    train = order[~eligible | (pos_from_end > 2)]
    return Split(dataset, np.sort(train), np.sort(valid), np.sort(test), protocol="leave_one_out")


def temporal_split(dataset: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """One global cut-off: the last ``test_frac`` of interactions by time are test, the ``valid_frac`` before them
    valid. Cuts fall at timestamps (quantiles), so every interaction at the same time is on the same side.
    Only users who also have training interactions are evaluated on a stage; the others' targets stay, as
    cold-start users, but contribute no rows to evaluation."""
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(f"temporal_split: valid_frac={valid_frac}, test_frac={test_frac} must be in (0,1), sum < 1")
    ts = dataset.inter["timestamp"].to_numpy()
    t_valid = np.quantile(ts, 1 - valid_frac - test_frac)
    t_test = np.quantile(ts, 1 - test_frac)
    rows = np.arange(len(ts))
    train = rows[ts < t_valid]
    valid = rows[(ts >= t_valid) & (ts < t_test)]
    test = rows[ts >= t_test]
    if len(train) == 0 or len(valid) == 0 or len(test) == 0:
        raise DatasetError(f"{dataset.source or dataset.name}: temporal split left an empty part "
                           f"(train {len(train)}, valid {len(valid)}, test {len(test)})")
    # a user with no history before a stage cannot be ranked by history-based models: drop those target rows
    u = dataset.inter["user"].to_numpy()
    has_train = np.zeros(dataset.num_users, dtype=bool)
    has_train[u[train]] = True
    valid = valid[has_train[u[valid]]]
    has_known = has_train.copy()
    has_known[u[valid]] = True
    test = test[has_known[u[test]]]
    return Split(dataset, train, valid, test, protocol=f"temporal({valid_frac},{test_frac})", cutoff=float(t_valid))


def random_split(dataset: Dataset, valid_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0,
                 min_interactions: int = 3) -> Split:
    """Per user, a seeded random ``1 - valid_frac - test_frac`` / ``valid_frac`` / ``test_frac`` cut of the
    user's distinct items (the MMRec protocol; see the module docstring).

    A user with ``n >= min_interactions`` distinct items gets ``max(1, round(n * test_frac))`` test items and
    ``max(1, round(n * valid_frac))`` valid items, and keeps at least one in train; a user with fewer keeps
    everything in train and is not evaluated (counted in ``details["train_only_users"]``). Repeated interactions
    with one item all fall on the item's side, so no held-out item of a user is also one of their training items.
    The permutation depends on ``seed`` only (NumPy's PCG64), not on the machine.
    """
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ConfigError(f"random_split: valid_frac={valid_frac}, test_frac={test_frac} must be in (0,1), sum < 1")
    if min_interactions < 3:
        raise ConfigError(f"random_split: min_interactions must be >= 3 (one item each for train, valid and test), "
                          f"got {min_interactions}")
    inter = dataset.inter
    u = inter["user"].to_numpy()
    i = inter["item"].to_numpy()
    pair = u.astype(np.int64) * dataset.num_items + i  # one key per (user, item)
    keys, pair_of_row = np.unique(pair, return_inverse=True)
    key_user = keys // dataset.num_items
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(keys)), key_user))  # users in order, each user's items shuffled
    counts = np.bincount(key_user, minlength=dataset.num_users)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    part = np.zeros(len(keys), dtype=np.int8)  # 0 train, 1 valid, 2 test
    position = np.arange(len(keys)) - start[key_user[order]]  # rank of each key within its user's shuffle
    n = counts[key_user[order]]
    n_test = np.maximum(1, np.rint(n * test_frac)).astype(np.int64)
    n_valid = np.maximum(1, np.rint(n * valid_frac)).astype(np.int64)
    over = n_test + n_valid >= n  # tiny users: keep one item in train
    n_valid = np.where(over, np.maximum(1, n - 1 - n_test), n_valid)
    evaluated = n >= min_interactions
    part[order] = np.where(~evaluated, 0, np.where(position < n_test, 2, np.where(position < n_test + n_valid, 1, 0)))
    row_part = part[pair_of_row]
    rows = np.arange(len(inter))
    train_only = int(((counts > 0) & (counts < min_interactions)).sum())
    return Split(dataset, rows[row_part == 0], rows[row_part == 1], rows[row_part == 2],
                 protocol=f"random({valid_frac},{test_frac},seed={seed})", test_sees_valid=False,
                 details={"train_only_users": train_only, "repeated_rows": int(len(inter) - len(keys))})


SPLIT_PROTOCOLS = ("loo", "temporal", "random")


def _parse_protocol(protocol: str) -> tuple[str, dict]:
    """A recorded protocol (``Split.protocol``: ``temporal(0.1,0.1)``, ``random(0.1,0.1,seed=0)``) as a name and
    the keyword arguments that rebuild it, so a run or index that recorded its split can make it again."""
    name, paren, rest = protocol.partition("(")
    if not paren:
        return protocol, {}
    if not rest.endswith(")"):
        raise ConfigError(f"split protocol {protocol!r}: unbalanced parentheses")
    kwargs: dict = {}
    positional = ("valid_frac", "test_frac")
    for j, part in enumerate(p.strip() for p in rest[:-1].split(",") if p.strip()):
        key, eq, value = part.partition("=")
        if not eq:
            if j >= len(positional):
                raise ConfigError(f"split protocol {protocol!r}: unexpected argument {part!r}")
            key, value = positional[j], part
        try:
            kwargs[key.strip()] = int(value) if key.strip() == "seed" else float(value)
        except ValueError:
            raise ConfigError(f"split protocol {protocol!r}: {key.strip()} must be a number, got {value!r}") from None
    return name, kwargs


def make_split(dataset: Dataset, protocol: str = "loo", **kwargs) -> Split:
    """``loo`` (leave-one-out, default), ``temporal`` or ``random`` (per user, MMRec's protocol); a protocol as a
    split records it (``random(0.1,0.1,seed=0)``) rebuilds that split."""
    protocol, recorded = _parse_protocol(protocol)
    kwargs = {**recorded, **kwargs}
    if protocol in ("loo", "leave_one_out"):
        return leave_one_out(dataset)
    if protocol == "temporal":
        return temporal_split(dataset, **kwargs)
    if protocol == "random":
        return random_split(dataset, **kwargs)
    raise ConfigError(f"split protocol must be one of {list(SPLIT_PROTOCOLS)}, got {protocol!r}")
