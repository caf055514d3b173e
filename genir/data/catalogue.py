"""`Catalogue`: the things a system retrieves (items, documents, images), apart from any interaction.

A catalogue is a list of stable external ids with any side columns (``title``, ``text``, ``image``, ``caption``,
``year``, ``genres`` ...): movies with titles, package descriptions with a body, clip-art images with a path and
their captions. It exists without users: a document corpus or an image set is a catalogue plus queries
(:class:`~genir.data.tasks.QueryRetrievalTask`); a recommendation :class:`~genir.data.Dataset` is a catalogue plus
interactions (``dataset.catalogue``).

Row ``i`` is internal id ``i``. The :meth:`fingerprint` covers the ids and every column's content, so a model
trained on one catalogue refuses an index of another (the check is on the catalogue, not on the interactions:
one index serves every split of a dataset).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genir.errors import DatasetError

TEXT_COLUMNS = ("title", "text", "caption", "description")  # joined (in this order) by :meth:`Catalogue.text`


@dataclass
class Catalogue:
    """Items with stable external ids and side columns.

    Attributes:
        name: a short name used in cache keys and result files.
        ids: (N,) external ids as strings; ``ids[i]`` is the external id of internal id ``i``.
        columns: DataFrame with N rows (index 0..N-1) of side columns; any names and types. Columns holding a
            path (``image``) keep it as given.
        source: the file(s) the catalogue came from, for error messages.
    """

    name: str
    ids: np.ndarray
    columns: pd.DataFrame
    source: str = ""
    _index: dict = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.ids = np.asarray([str(x) for x in self.ids], dtype=object)
        if len(self.columns) != len(self.ids):
            raise DatasetError(f"{self.source or self.name}: {len(self.ids)} ids but {len(self.columns)} rows of "
                               "side columns")
        dup = pd.Index(self.ids)[pd.Index(self.ids).duplicated()].tolist()
        if dup:
            raise DatasetError(f"{self.source or self.name}: duplicate item id(s) {dup[:5]}")
        self.columns = self.columns.reset_index(drop=True)

    @classmethod
    def from_frame(cls, name: str, frame: pd.DataFrame, id_column: str = "id", source: str = "") -> Catalogue:
        """From a frame with an id column (``id``, or ``item``/``doc_id``/``image_id`` named by ``id_column``)
        and side columns, rows in catalogue order."""
        if id_column not in frame.columns:
            raise DatasetError(f"{source or name}: no {id_column!r} column (has {list(frame.columns)})")
        if len(frame) == 0:
            raise DatasetError(f"{source or name}: empty catalogue")
        return cls(name, frame[id_column].astype(str).to_numpy(), frame.drop(columns=[id_column]), source)

    # -- lookups -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_items(self) -> int:
        return len(self.ids)

    def index(self, external) -> int:
        """Internal id of an external id; DatasetError naming the catalogue if unknown."""
        if self._index is None:
            self._index = {x: i for i, x in enumerate(self.ids)}
        try:
            return self._index[str(external)]
        except KeyError:
            raise DatasetError(f"{self.name}: unknown item id {external!r}") from None

    def title(self, i: int) -> str:
        if "title" in self.columns.columns and isinstance(self.columns["title"].iat[i], str):
            return self.columns["title"].iat[i]
        return f"item {self.ids[i]}"

    def text(self, i: int, columns: tuple[str, ...] = TEXT_COLUMNS) -> str:
        """The item's text: the non-empty values of ``columns`` that exist, joined by ``". "``."""
        parts = [self.columns[c].iat[i] for c in columns if c in self.columns.columns]
        return ". ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())

    def texts(self, columns: tuple[str, ...] = TEXT_COLUMNS) -> list[str]:
        return [self.text(i, columns) for i in range(len(self))]

    # -- identity ----------------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the ids and every side column's content (16 hex digits)."""
        h = hashlib.sha256(self.name.encode())
        h.update("\x00".join(self.ids).encode())
        for col in sorted(self.columns.columns, key=str):
            h.update(f"\x01{col}\x01".encode())
            h.update("\x00".join(_canonical(v) for v in self.columns[col]).encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {"name": self.name, "items": len(self), "columns": [str(c) for c in self.columns.columns],
                "fingerprint": self.fingerprint(), "source": self.source}

    # -- growth ------------------------------------------------------------------------------------------------
    def extend(self, frame: pd.DataFrame, id_column: str = "id", source: str = "") -> Catalogue:
        """A new catalogue with the rows of ``frame`` appended (new ids only; existing rows and ids unchanged)."""
        new = Catalogue.from_frame(self.name, frame, id_column, source)
        clash = sorted(set(new.ids) & set(self.ids))
        if clash:
            raise DatasetError(f"{source or 'new items'}: item id(s) {clash[:5]} already in catalogue {self.name}")
        columns = pd.concat([self.columns, new.columns], ignore_index=True)
        return Catalogue(self.name, np.concatenate([self.ids, new.ids]), columns, self.source)

    def records(self) -> list[dict]:
        """One dict per item: ``{"id": ..., column: value, ...}``, JSON-ready (missing values as None)."""
        out = []
        for i, row in enumerate(self.columns.itertuples(index=False)):
            rec = {"id": self.ids[i]}
            for col, value in zip(self.columns.columns, row):
                rec[str(col)] = _json_value(value)
            out.append(rec)
        return out


def _json_value(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _canonical(value) -> str:
    return json.dumps(_json_value(value), sort_keys=True, default=str)
