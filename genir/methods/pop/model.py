"""MostPopular: the score of an item is its training-interaction count, the same for every user."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genir.data.split import Split
from genir.eval.evaluator import EvalBatch
from genir.models.base import MethodConfig, Recommender


@dataclass
class MostPopularConfig(MethodConfig):
    """No hyper-parameters: popularity is counted on the training split."""


class MostPopular(Recommender):
    config_class = MostPopularConfig

    def __init__(self, config: MostPopularConfig, split: Split):
        super().__init__(config, split)
        counts = np.bincount(split.train["item"].to_numpy(), minlength=split.num_items).astype(np.float32)
        self.register_buffer("counts", torch.as_tensor(counts))

    def full_scores(self, batch: EvalBatch) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(batch.users), -1)
