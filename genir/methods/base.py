"""The contract between a recommender and the one Trainer / evaluator.

A method supplies its training examples, the loss of a batch and full-catalogue scores; the Trainer owns the
loop (device, precision, accumulation, checkpoints, early stopping). ``forward(batch)`` returns the loss so that
data-parallel wrappers (DDP through accelerate) see every training step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import TensorDataset

from genir.data.split import Split
from genir.errors import ConfigError
from genir.eval.evaluator import EvalBatch


class BatchedTensorDataset(TensorDataset):
    """A TensorDataset that the DataLoader indexes once per batch (``__getitems__``) instead of once per row:
    for the ~100k tiny (user, item) pairs of a BPR epoch, per-row fetching and collating cost 3x the model's time.
    Returns the batch already collated, so the loader must use :func:`passthrough_collate`."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def passthrough_collate(batch):
    return batch


@dataclass
class MethodConfig:
    """Base of every method's hyper-parameter dataclass."""

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> MethodConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
        out = {}
        for k, v in values.items():
            default = getattr(cls, k, None)
            out[k] = coerce(v, type(default) if default is not None else None, f"{source}: {k}")
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)


def coerce(value, typ, where: str):
    """Convert a command-line string (or YAML value) to the type of the field's default."""
    if typ is None or isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if typ in (tuple, list) and isinstance(value, str):
            return typ(int(x) if x.strip().lstrip("-").isdigit() else x.strip() for x in value.split(","))
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None


class Recommender(nn.Module):
    """Base class of recommenders trained by :class:`genir.training.Trainer`.

    Subclasses set ``config_class`` and implement :meth:`loss` and :meth:`full_scores`; they may override
    :meth:`train_dataset`, :meth:`collate`, :meth:`on_epoch_start` and :meth:`prepare_eval`.
    ``trainer_defaults`` holds the trainer settings the method works best with (lr, batch size...); a user's
    settings override them.
    """

    config_class: type[MethodConfig] = MethodConfig
    trainer_defaults: ClassVar[dict] = {}

    def __init__(self, config: MethodConfig, split: Split):
        super().__init__()
        self.config = config
        self.num_users = split.num_users
        self.num_items = split.num_items
        self._split_desc = split.describe()

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


class PropagatedRecommender(Recommender):
    """A recommender whose user and item vectors come from one :meth:`propagate` over the whole catalogue (graph
    convolutions, feature fusion): propagated once per evaluation round and scored by dot product.
    Subclasses implement :meth:`propagate` and call :meth:`forget` in ``loss`` (the weights are about to change)."""

    _cache: tuple[torch.Tensor, torch.Tensor] | None = None

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
