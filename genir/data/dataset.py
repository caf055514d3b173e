"""`Dataset`: users, items and timestamped interactions with stable internal ids, plus item side information.

Internal ids are contiguous integers ``0..n-1`` for users and items, assigned by sorting the external ids
(numerically when every id is an integer, else as strings), so the same input always gives the same ids.
Interactions are kept sorted by time; ties keep the order of the input file (a stable sort). RecBole does the
same on its own timestamps, but its ml-100k config rescales them to [0, 1] in float32 (about 1.3 s of
resolution), so for 5 of 943 users it holds out an interaction one second older than the truly last one;
benchmarks/vs_recbole.py lists them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genir.errors import DatasetError


def _stable_order(values: pd.Series) -> np.ndarray:
    """Unique external ids sorted numerically when all are integers, else lexicographically."""
    uniq = pd.unique(values.astype(str))
    try:
        return np.array(sorted(uniq, key=int), dtype=object)
    except ValueError:
        return np.array(sorted(uniq), dtype=object)


@dataclass
class Dataset:
    """An interaction dataset with stable internal ids.

    Attributes:
        name: a short name (``ml-100k``) used in cache keys and result files.
        inter: DataFrame with int64 ``user``, ``item`` (internal ids), float64 ``timestamp`` and optionally
            ``rating``, sorted by time (stable).
        user_ids / item_ids: external id of each internal id (``item_ids[i]`` is the external id of item ``i``).
        items: DataFrame indexed by internal item id with whatever side information exists
            (``title``, ``year``, ``genres`` as a list of strings); rows for every item.
        kg: optional DataFrame ``head, relation, tail`` of knowledge-graph triples (entity strings).
        item_entity: optional DataFrame ``item`` (internal id), ``entity`` linking items to KG entities.
        source: the file(s) the data came from, for error messages and provenance.
    """

    name: str
    inter: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame
    kg: pd.DataFrame | None = None
    item_entity: pd.DataFrame | None = None
    source: str = ""
    _user_index: dict = field(default=None, init=False, repr=False)
    _item_index: dict = field(default=None, init=False, repr=False)

    # ----------------------------------------------------------------------------------------------------------
    @classmethod
    def from_frames(
        cls,
        name: str,
        inter: pd.DataFrame,
        items: pd.DataFrame | None = None,
        kg: pd.DataFrame | None = None,
        link: pd.DataFrame | None = None,
        source: str = "",
    ) -> Dataset:
        """Build from external-id frames.

        ``inter`` has columns ``user, item, timestamp`` (+ optional ``rating``) holding external ids.
        ``items`` is indexed by nothing in particular and has an ``item`` column of external ids plus side
        columns; items that appear only in ``items`` but in no interaction are dropped (they could never be
        trained on). ``link`` has ``item, entity``.
        """
        if len(inter) == 0:
            raise DatasetError(f"{source or name}: no interactions")
        inter = inter.copy()
        inter["user"] = inter["user"].astype(str)
        inter["item"] = inter["item"].astype(str)
        user_ids = _stable_order(inter["user"])
        item_ids = _stable_order(inter["item"])
        uidx = pd.Index(user_ids)
        iidx = pd.Index(item_ids)
        out = pd.DataFrame(
            {
                "user": uidx.get_indexer(inter["user"]).astype(np.int64),
                "item": iidx.get_indexer(inter["item"]).astype(np.int64),
                "timestamp": pd.to_numeric(inter["timestamp"]).astype(np.float64).to_numpy(),
            }
        )
        if "rating" in inter.columns:
            out["rating"] = pd.to_numeric(inter["rating"]).astype(np.float32).to_numpy()
        out = out.sort_values("timestamp", kind="stable").reset_index(drop=True)

        side = pd.DataFrame(index=pd.RangeIndex(len(item_ids), name="item_index"))
        if items is not None and len(items):
            items = items.copy()
            items["item"] = items["item"].astype(str)
            items = items.drop_duplicates("item").set_index("item")
            side = items.reindex(item_ids).reset_index(drop=True)
            side.index.name = "item_index"
        if "title" not in side.columns:
            side["title"] = [f"item {x}" for x in item_ids]
        side["title"] = [
            t if isinstance(t, str) and t else f"item {x}" for t, x in zip(side["title"], item_ids)
        ]
        if "genres" in side.columns:
            side["genres"] = [g if isinstance(g, list) else [] for g in side["genres"]]

        item_entity = None
        if link is not None and len(link):
            link = link.copy()
            link["item"] = link["item"].astype(str)
            pos = iidx.get_indexer(link["item"])
            keep = pos >= 0
            item_entity = pd.DataFrame({"item": pos[keep].astype(np.int64), "entity": link["entity"][keep].values})
            item_entity = item_entity.sort_values("item", kind="stable").reset_index(drop=True)
        return cls(
            name=name, inter=out, user_ids=user_ids, item_ids=item_ids, items=side, kg=kg,
            item_entity=item_entity, source=source,
        )

    # ----------------------------------------------------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return len(self.inter)

    def user_index(self, external) -> int:
        """Internal id of an external user id (str or int); raises DatasetError if unknown."""
        if self._user_index is None:
            self._user_index = {str(x): i for i, x in enumerate(self.user_ids)}
        try:
            return self._user_index[str(external)]
        except KeyError:
            raise DatasetError(f"{self.name}: unknown user id {external!r}") from None

    def item_index(self, external) -> int:
        """Internal id of an external item id (str or int); raises DatasetError if unknown."""
        if self._item_index is None:
            self._item_index = {str(x): i for i, x in enumerate(self.item_ids)}
        try:
            return self._item_index[str(external)]
        except KeyError:
            raise DatasetError(f"{self.name}: unknown item id {external!r}") from None

    def title(self, item: int) -> str:
        return str(self.items["title"].iat[item])

    @property
    def catalogue(self):
        """The items with their side columns as a :class:`~genir.data.catalogue.Catalogue` (no interactions)."""
        from genir.data.catalogue import Catalogue

        return Catalogue(self.name, self.item_ids, self.items, self.source)

    def fingerprint(self) -> str:
        """Content hash of the interactions and item ids; part of every cache key built on this dataset."""
        h = hashlib.sha256()
        h.update(self.name.encode())
        h.update(np.ascontiguousarray(self.inter[["user", "item"]].to_numpy()).tobytes())
        h.update(np.ascontiguousarray(self.inter["timestamp"].to_numpy()).tobytes())
        h.update("\x00".join(map(str, self.item_ids)).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        density = self.num_interactions / max(1, self.num_users * self.num_items)
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": round(density, 5),
            "kg_triples": 0 if self.kg is None else len(self.kg),
            "linked_items": 0 if self.item_entity is None else int(self.item_entity["item"].nunique()),
            "side_columns": [c for c in self.items.columns],
            "source": self.source,
        }

    # ----------------------------------------------------------------------------------------------------------
    def subset(self, keep: np.ndarray, name: str | None = None) -> Dataset:
        """A new Dataset with only the interactions where ``keep`` is True, ids re-assigned contiguously."""
        inter = self.inter[keep]
        ext = pd.DataFrame(
            {
                "user": self.user_ids[inter["user"].to_numpy()],
                "item": self.item_ids[inter["item"].to_numpy()],
                "timestamp": inter["timestamp"].to_numpy(),
            }
        )
        if "rating" in inter.columns:
            ext["rating"] = inter["rating"].to_numpy()
        if len(ext) == 0:
            raise DatasetError(f"{self.source or self.name}: no interactions left after filtering")
        items = self.items.copy()
        items.insert(0, "item", self.item_ids)
        link = None
        if self.item_entity is not None:
            link = pd.DataFrame(
                {"item": self.item_ids[self.item_entity["item"].to_numpy()], "entity": self.item_entity["entity"]}
            )
        return Dataset.from_frames(name or self.name, ext, items=items, kg=self.kg, link=link, source=self.source)
