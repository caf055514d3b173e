"""MMGRec: generative recommendation with Graph RQ-VAE Rec-IDs and a relation-aware transformer.

It is the generative recommender (:class:`~genir.models.generative.GenerativeRecommender`, as TIGER) with three
switches (README.md lists every deviation from the paper):

* item IDs come from whatever index dir it is given; the paper's are the Graph RQ-VAE's
  (``tokenizers/graph_rqvae.yaml``: graph-encoder vectors -> residual VQ -> popularity-ordered collision token);
* ``encoder_input="features"``: each history item is one encoder token, a linear map of its frozen 64-d
  graph-encoder vector (paper: the frozen GNN item representations);
* ``position="relation"``: no positional encoding; the relation-aware self-attention gates extra single-head
  projections by ``MLP(h_u)`` of the user's frozen graph vector (the paper's ``W_u = MLP(h_u) W``).

The graph encoder is trained once per (features, split, settings) and cached, so the index build and every run
share it; nothing of it is trained with the generator (frozen, as in the paper).
"""

from __future__ import annotations

import numpy as np

from genir.data.split import Split
from genir.index import GenirIndex, open_index_for
from genir.methods.mmgrec.config import MMGRecConfig
from genir.models.generative import GenerativeRecommender


class MMGRec(GenerativeRecommender):
    config_class = MMGRecConfig

    def __init__(self, config: MMGRecConfig, split: Split, index: GenirIndex | None = None):
        super().__init__(config, split, index or open_index_for(config.index, split, "mmgrec"))

    def conditioning(self, split: Split) -> tuple[np.ndarray | None, np.ndarray | None]:
        from genir.features.modalities import load_modalities
        from genir.methods.mmgrec.graph import GraphEncoderConfig, graph_representations

        c = self.config
        needs = c.encoder_input == "features" or c.position == "relation"
        if not needs:
            return None, None
        x = np.concatenate(list(load_modalities(split, c.graph_features).values()), axis=1)
        graph = GraphEncoderConfig(hidden=c.graph_hidden, out_dim=c.graph_dim, dropout_hidden=c.graph_dropout_hidden,
                                   dropout_out=c.graph_dropout_out)
        items, users = graph_representations(split, x, graph, seed=c.graph_seed, trainer={
            "epochs": c.graph_epochs, "lr": c.graph_lr, "patience": c.graph_patience})
        return items, users
