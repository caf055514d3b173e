"""TIGER: generative retrieval over semantic IDs with a transformer encoder-decoder (Rajput et al., NeurIPS 2023).

The model is :class:`genir.models.generative.GenerativeRecommender` with TIGER's defaults (:class:`TigerConfig`):
code tokens of the history as encoder input, absolute positions, IDs from any index dir (the paper's are the
RQ-VAE's, ``tokenizers/rqvae.yaml``). See that class for training and scoring, and README.md for the deviations
from the paper.
"""

from __future__ import annotations

from genir.data.split import Split
from genir.index import GenirIndex, open_index_for
from genir.methods.tiger.config import TigerConfig
from genir.models.generative import GenerativeRecommender


class Tiger(GenerativeRecommender):
    config_class = TigerConfig

    def __init__(self, config: TigerConfig, split: Split, index: GenirIndex | None = None):
        super().__init__(config, split, index or open_index_for(config.index, split, "tiger"))
