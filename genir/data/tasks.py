"""Tasks: what is trained on and how it is evaluated, for any catalogue.

Two implementations of one evaluation protocol interface (``catalogue``, ``protocol``, ``stages``,
``describe()``):

* :class:`genir.data.Split` - recommendation: a dataset's interactions split by leave-one-out or a global
  temporal cut-off; a user's history is the query, the held-out items are the targets, history is excluded;
* :class:`QueryRetrievalTask` - query retrieval (BEIR style: corpus, queries, qrels): text queries per stage
  with their relevant items, training examples such as DSI's document -> id and query -> id pairs, and
  corpus steps for incremental indexing (D0, D1, ...: which items exist at each step).

The evaluators in :mod:`genir.eval` take either, and the one :class:`~genir.training.Trainer` trains on either
(a model turns the task into torch training examples with ``train_dataset(task)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genir.data.catalogue import Catalogue
from genir.errors import ConfigError, DatasetError

RETRIEVAL_STAGES = ("valid", "test")


@dataclass
class QueryBatch:
    """Queries handed to a retrieval model: their ids and texts (and, for a step of incremental indexing, the
    items that exist at that step, so a model ranks only those)."""

    qids: list[str]
    texts: list[str]
    allowed: np.ndarray | None = None  # (N,) bool over the catalogue, or None: every item


@dataclass
class QueryRetrievalTask:
    """Queries with relevance judgements over a :class:`Catalogue`.

    Attributes:
        catalogue: the corpus (documents, images ...).
        queries: DataFrame ``qid`` (str), ``text`` (str), ``stage`` (``train``, ``valid`` or ``test``) and
            optionally ``step`` (the corpus step the query belongs to; 0 without steps).
        qrels: DataFrame ``qid``, ``item`` (internal id), ``relevance`` (> 0 is relevant).
        train_pairs: DataFrame ``text``, ``item``, ``kind`` of training examples a generator learns from (DSI:
            ``indexing`` = document text -> its id, ``query`` = a training query -> a relevant id,
            ``pseudo`` = a pseudo-query made from the document). Defaults to the training queries' qrels.
        steps: per corpus step, the internal ids of the items that arrive at that step (step 0 = the initial
            corpus D0). Empty: one step holding the whole catalogue.
        name: a short name for results.
    """

    catalogue: Catalogue
    queries: pd.DataFrame
    qrels: pd.DataFrame
    train_pairs: pd.DataFrame | None = None
    steps: list[np.ndarray] = field(default_factory=list)
    name: str = ""
    protocol: str = "queries"
    stages = RETRIEVAL_STAGES

    def __post_init__(self):
        src = self.name or self.catalogue.name
        for col in ("qid", "text", "stage"):
            if col not in self.queries.columns:
                raise DatasetError(f"{src}: queries need a {col!r} column (have {list(self.queries.columns)})")
        for col in ("qid", "item"):
            if col not in self.qrels.columns:
                raise DatasetError(f"{src}: qrels need a {col!r} column (have {list(self.qrels.columns)})")
        self.queries = self.queries.assign(qid=self.queries["qid"].astype(str)).reset_index(drop=True)
        if self.queries["qid"].duplicated().any():
            dup = self.queries["qid"][self.queries["qid"].duplicated()].tolist()
            raise DatasetError(f"{src}: duplicate query id(s) {dup[:5]}")
        bad_stage = sorted(set(self.queries["stage"]) - {"train", *RETRIEVAL_STAGES})
        if bad_stage:
            raise DatasetError(f"{src}: query stage(s) {bad_stage}; expected train, valid or test")
        if "step" not in self.queries.columns:
            self.queries["step"] = 0
        qrels = self.qrels.assign(qid=self.qrels["qid"].astype(str))
        if "relevance" not in qrels.columns:
            qrels["relevance"] = 1
        items = qrels["item"].to_numpy()
        if len(items) and (items.min() < 0 or items.max() >= len(self.catalogue)):
            raise DatasetError(f"{src}: qrels name item(s) outside the catalogue (0..{len(self.catalogue) - 1})")
        unknown = sorted(set(qrels["qid"]) - set(self.queries["qid"]))
        if unknown:
            raise DatasetError(f"{src}: qrels for unknown query id(s) {unknown[:5]}")
        self.qrels = qrels[qrels["relevance"] > 0].reset_index(drop=True)
        if self.train_pairs is None:
            train = self.queries[self.queries["stage"] == "train"][["qid", "text"]]
            pairs = train.merge(self.qrels[["qid", "item"]], on="qid")
            self.train_pairs = pairs[["text", "item"]].assign(kind="query")
        if not self.steps:
            self.steps = [np.arange(len(self.catalogue))]
        self.steps = [np.asarray(s, dtype=np.int64) for s in self.steps]
        seen = np.concatenate(self.steps)
        if len(np.unique(seen)) != len(seen) or len(seen) and (seen.min() < 0 or seen.max() >= len(self.catalogue)):
            raise DatasetError(f"{src}: corpus steps must be disjoint sets of catalogue items")
        self._relevant = self.qrels.groupby("qid")["item"].apply(lambda s: np.unique(s.to_numpy())).to_dict()

    # -- the protocol interface ----------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return len(self.catalogue)

    def _check_stage(self, stage: str) -> None:
        if stage not in ("train", *RETRIEVAL_STAGES):
            raise ConfigError(f"stage must be one of {('train', *RETRIEVAL_STAGES)}, got {stage!r}")

    def stage_queries(self, stage: str, step: int | None = None) -> pd.DataFrame:
        """The queries of ``stage`` (of corpus step ``step`` if given) that have at least one relevant item."""
        self._check_stage(stage)
        q = self.queries[self.queries["stage"] == stage]
        if step is not None:
            q = q[q["step"] == step]
        return q[q["qid"].isin(self._relevant.keys())].reset_index(drop=True)

    def relevant(self, qid: str) -> np.ndarray:
        """Internal ids of the items relevant to ``qid``."""
        return self._relevant.get(str(qid), np.zeros(0, dtype=np.int64))

    def items_at(self, step: int) -> np.ndarray:
        """(N,) bool: the items that exist after corpus step ``step`` (D0 + ... + D_step)."""
        if not 0 <= step < len(self.steps):
            raise ConfigError(f"corpus step must be in 0..{len(self.steps) - 1}, got {step}")
        out = np.zeros(len(self.catalogue), dtype=bool)
        for s in self.steps[:step + 1]:
            out[s] = True
        return out

    def fingerprint(self) -> str:
        import hashlib

        h = hashlib.sha256(self.catalogue.fingerprint().encode())
        h.update(pd.util.hash_pandas_object(self.queries[["qid", "text", "stage", "step"]], index=False).values
                 .tobytes())
        h.update(pd.util.hash_pandas_object(self.qrels[["qid", "item"]], index=False).values.tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        counts = self.queries["stage"].value_counts().to_dict()
        return {"protocol": self.protocol, "catalogue": self.catalogue.describe(), "queries": counts,
                "qrels": len(self.qrels), "train_pairs": len(self.train_pairs),
                "train_pair_kinds": self.train_pairs["kind"].value_counts().to_dict(),
                "steps": [len(s) for s in self.steps]}
