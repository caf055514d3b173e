"""The contract between a recommender and the one Trainer / evaluator.

A method supplies its training examples, the loss of a batch and full-catalogue scores; the Trainer owns the
loop (device, precision, accumulation, checkpoints, early stopping). ``forward(batch)`` returns the loss so that
data-parallel wrappers (DDP through accelerate) see every training step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from genir.config import Config
from genir.data.batches import BatchedTensorDataset
from genir.data.split import Split
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch


@dataclass
class MethodConfig(Config):
    """Base of every method's hyper-parameter dataclass (:class:`genir.config.Config`): settings from YAML or
    ``key=value`` are converted to each field's type and checked."""

    @classmethod
    def from_dict(cls, values: dict, source: str = "config", prefix: str = "", *, coerce: bool = True
                  ) -> MethodConfig:
        return super().from_dict(values, source, prefix, coerce=coerce)


def normal_init(module: nn.Module, std: float = 0.02) -> None:
    """BERT-style initialisation, for ``model.apply``: linear and embedding weights ~ N(0, std), biases 0 (the
    transformers of SASRec and of the generative recommender)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


_PRELOADED: ContextVar[dict | None] = ContextVar("genir_preloaded_inputs", default=None)


@contextmanager
def preloaded_inputs(inputs: dict) -> Iterator[None]:
    """Within this block, :meth:`Recommender.saved_input` returns ``inputs[name]`` instead of computing it: how a
    saved run is loaded without recomputing its data-derived inputs (graph vectors, feature matrices)."""
    token = _PRELOADED.set(inputs)
    try:
        yield
    finally:
        _PRELOADED.reset(token)


class Recommender(nn.Module):
    """Base class of recommenders trained by :class:`genir.training.Trainer`.

    Subclasses set ``config_class`` and implement :meth:`loss` and :meth:`full_scores`; they may override
    :meth:`train_dataset`, :meth:`collate`, :meth:`on_epoch_start` and :meth:`prepare_eval`.
    ``trainer_defaults`` holds the trainer settings the method works best with (lr, batch size...); a user's
    settings override them.
    """

    config_class: type[MethodConfig] = MethodConfig
    trainer_defaults: ClassVar[dict] = {}
    needs_known_users: ClassVar[bool] = False  # True: scores only users seen in training (a user table)

    def __init__(self, config: MethodConfig, split: Split):
        super().__init__()
        self._saved_inputs: dict[str, object] = {}
        self.config = config
        self.num_users = split.num_users
        self.num_items = split.num_items
        self._split_desc = split.describe()

    def saved_input(self, name: str, compute: Callable[[], object]):
        """A model input computed from data (a graph encoder's vectors, modality feature matrices): computed by
        ``compute()``, or taken from the run being loaded (:func:`preloaded_inputs`), so loading a run never
        recomputes or retrains it. The value (an array, a tuple of arrays or None, a dict of arrays) is kept in
        ``saved_inputs`` and written with the run."""
        pre = _PRELOADED.get()
        value = pre[name] if pre is not None and name in pre else compute()
        self._saved_inputs[name] = value
        return value

    @property
    def saved_inputs(self) -> dict[str, object]:
        return dict(self._saved_inputs)

    # -- training --------------------------------------------------------------------------------------------
    def train_dataset(self, split: Split) -> TorchDataset:
        """Default: one example per training interaction, ``(user, item)``, fetched a whole batch at a time."""
        train = split.train
        return BatchedTensorDataset(
            torch.tensor(train["user"].to_numpy(), dtype=torch.long),
            torch.tensor(train["item"].to_numpy(), dtype=torch.long),
        )

    collate = None  # None: torch's default_collate (or none at all for a BatchedTensorDataset)

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement loss(batch)")

    def forward(self, batch) -> torch.Tensor:
        return self.loss(batch)

    def on_epoch_start(self, epoch: int) -> None:
        """Hook called before each training epoch."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    # -- inference -------------------------------------------------------------------------------------------
    def prepare_eval(self) -> None:
        """Hook called once before a round of scoring (e.g. to propagate a graph once for all users)."""

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        """(B, num_items) scores for every item of the catalogue."""
        raise NotImplementedError(f"{type(self).__name__} must implement full_scores(batch)")

    @torch.no_grad()
    def recommend(self, histories: list[list[int]], k: int = 10,
                  users: list[int | None] | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` ``(item, score)`` per history (internal item ids, time order), the history's items excluded:
        the retrieval interface every model serves (generative models override it with their beam search).
        ``users``: the internal id of each history's user when known (None: an ad-hoc history; models that
        score known users only, such as BPR, need it)."""
        from genir.eval.evaluator import pad_histories

        if self.needs_known_users and (users is None or any(u is None for u in users)):
            raise ConfigError(f"{type(self).__name__} scores known users only (a learned user table); give a "
                              "user id (--user), not an item history")
        device = next(iter([*self.parameters(), *self.buffers()]), torch.zeros(0)).device
        hist, lens = pad_histories([np.asarray(h, dtype=np.int64) for h in histories], self.num_items)
        user_ids = torch.tensor([-1 if u is None else int(u) for u in (users or [None] * len(histories))])
        self.eval()
        self.prepare_eval()
        scores = self.full_scores(EvalBatch(user_ids.clamp_min(0), hist, lens, self.num_items).to(device)).float()
        for row, h in enumerate(histories):
            if len(h):
                scores[row, torch.as_tensor(list(h), dtype=torch.long, device=scores.device)] = float("-inf")
        top = torch.topk(scores, min(k, self.num_items), dim=1)
        return [[(int(i), float(s)) for i, s in zip(ti.tolist(), ts.tolist()) if s > float("-inf")]
                for ti, ts in zip(top.indices, top.values)]


class PropagatedRecommender(Recommender):
    """A recommender whose user and item vectors come from one :meth:`propagate` over the whole catalogue (graph
    convolutions, feature fusion): propagated once per evaluation round and scored by dot product.
    Subclasses implement :meth:`propagate` and call :meth:`forget` in ``loss`` (the weights are about to change)."""

    _cache: tuple[torch.Tensor, torch.Tensor] | None = None
    needs_known_users: ClassVar[bool] = True

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (U, d), items (N, d))."""
        raise NotImplementedError(f"{type(self).__name__} must implement propagate()")

    def forget(self) -> None:
        self._cache = None

    def prepare_eval(self) -> None:
        with torch.no_grad():
            self._cache = self.propagate()

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        if self._cache is None:
            self.prepare_eval()
        u_all, i_all = self._cache
        return u_all[batch.users] @ i_all.T

    def item_embeddings(self) -> torch.Tensor:
        with torch.no_grad():
            return self.propagate()[1]
