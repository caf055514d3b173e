"""MMGRec's Graph RQ-VAE: Rec-IDs from residual quantization of graph-encoder item vectors.

The item features (the spec's ``features``, e.g. ``text,kg`` concatenated) initialise the items of a GraphSAGE
encoder trained with BPR on the training split's user-item graph (:mod:`genir.methods.mmgrec.graph`); its 64-d
item vectors, which mix content and collaborative signal, are quantized by the shared :class:`~genir.ids.RQVAE`
(MMGRec: encoder 64 -> 16 -> 4-d latent, 3 codebooks, beta 0.25). As in the paper the two stages are trained
one after the other, not end to end. The popularity token (``collision: popularity`` in the spec) is the shared
collision handling.

``encode(features)`` of the fitted catalogue returns the fitted items' codes; features of other items (``genir
index add``) are encoded inductively: the graph layers with an empty neighbourhood, since a new item has no
interactions yet. Deviations from the paper's code: codebooks k-means initialised with EMA updates and dead-code
re-seeding (the shared RQVAE; the paper initialises uniformly in +-1/K and learns them by the loss), and the graph
encoder stops early on validation NDCG@10 instead of training a fixed 60 epochs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from genir.errors import SemanticIdError
from genir.ids.config import param
from genir.ids.rqvae import RQVAE, RQVAEConfig


@dataclass
class GraphRQVAEConfig(RQVAEConfig):
    graph_hidden: int = param(128, "GraphSAGE hidden width (MMGRec: 128)", min=1)
    graph_dim: int = param(64, "graph item/user vector size, the RQ-VAE's input (MMGRec: 64)", min=1)
    graph_dropout_hidden: float = param(0.5, "dropout after GraphSAGE layer 1 (MMGRec: 0.5)", min=0.0, max=0.99)
    graph_dropout_out: float = param(0.2, "dropout after GraphSAGE layer 2 (MMGRec: 0.2)", min=0.0, max=0.99)
    graph_epochs: int = param(60, "max BPR epochs of the graph encoder (MMGRec: 60)", min=1)
    graph_lr: float = param(1e-3, "graph encoder learning rate (MMGRec: 1e-3)", min=0.0)
    graph_patience: int = param(10, "early stopping patience (validation NDCG@10) of the graph encoder", min=1)



def features_sha256(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features, dtype=np.float32).tobytes()).hexdigest()


class GraphRQVAE(RQVAE):
    name = "graph_rqvae"
    config_class = GraphRQVAEConfig
    FIT_CONTEXT: ClassVar[tuple[str, ...]] = ("split", "progress")  # genir index build passes its split

    @property
    def fit_context(self) -> tuple[str, ...]:
        return self.FIT_CONTEXT  # the graph encoder's vectors are the input; no paired alignment here

    def graph_encoder_config(self):
        from genir.methods.mmgrec.graph import GraphEncoderConfig

        c = self.config
        return GraphEncoderConfig(hidden=c.graph_hidden, out_dim=c.graph_dim, dropout_hidden=c.graph_dropout_hidden,
                                  dropout_out=c.graph_dropout_out)

    def graph_trainer_settings(self) -> dict:
        c = self.config
        return {"epochs": c.graph_epochs, "lr": c.graph_lr, "patience": c.graph_patience}

    def fit(self, features, *, split=None, progress: bool | None = None, device: str | None = None) -> GraphRQVAE:
        from genir.methods.mmgrec.graph import graph_representations

        if split is None:
            raise SemanticIdError("graph_rqvae: fit() needs the user-item graph (split=...); `genir index build` "
                                  "passes the training split it records (--split)")
        x = self._check_raw(features)
        items, users, encoder = graph_representations(
            split, x, self.graph_encoder_config(), seed=self.config.seed, trainer=self.graph_trainer_settings(),
            return_model=True)
        self.item_vectors, self.user_vectors = items, users
        self.graph_weights = {k: v.detach().cpu().numpy().copy() for k, v in encoder.state_dict().items()
                              if k.split(".")[0] in ("item_in", "layer1", "layer2")}
        self.input_dim, self.fit_sha = x.shape[1], features_sha256(x)
        return super().fit(items, progress=progress, device=device)

    def _check_raw(self, features) -> np.ndarray:
        x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float32)
        if x.ndim != 2 or not np.isfinite(x).all():
            raise SemanticIdError(f"{self.name}: expected a finite (N, d) feature matrix, got shape {x.shape}")
        if getattr(self, "input_dim", None) is not None and self.num_features is not None and \
                x.shape[1] != self.input_dim:
            raise SemanticIdError(f"{self.name}: features have {x.shape[1]} columns, the scheme was fitted on "
                                  f"{self.input_dim}")
        return x

    def graph_vectors(self, features) -> np.ndarray:
        """(N, graph_dim): the fitted vectors for the fitted catalogue, inductive ones for other items."""
        self._require_fitted()
        x = self._check_raw(features)
        if features_sha256(x) == self.fit_sha:
            return self.item_vectors
        from genir.methods.mmgrec.graph import vectors_without_neighbours

        w = {k: torch.from_numpy(np.array(v)) for k, v in self.graph_weights.items()}
        layers = torch.nn.ModuleDict({
            "item_in": torch.nn.Linear(self.input_dim, self.config.graph_hidden, bias=False),
            "layer1": torch.nn.Linear(2 * self.config.graph_hidden, self.config.graph_hidden),
            "layer2": torch.nn.Linear(2 * self.config.graph_hidden, self.config.graph_dim)})
        layers.load_state_dict(w)
        return vectors_without_neighbours(layers["item_in"], layers["layer1"], layers["layer2"],
                                          torch.from_numpy(x)).numpy()

    def encode(self, features) -> np.ndarray:
        return super().encode(self.graph_vectors(features))

    def _get_state(self):
        meta, arrays = super()._get_state()
        arrays = {**arrays, "graph.item_vectors": self.item_vectors, "graph.user_vectors": self.user_vectors,
                  **{f"graph.weights.{k}": v for k, v in self.graph_weights.items()}}
        return {**meta, "input_dim": self.input_dim, "fit_sha256": self.fit_sha}, arrays

    def _set_state(self, meta, arrays):
        meta = dict(meta)
        try:
            self.input_dim, self.fit_sha = int(meta.pop("input_dim")), str(meta.pop("fit_sha256"))
            self.item_vectors = np.array(arrays["graph.item_vectors"])
            self.user_vectors = np.array(arrays["graph.user_vectors"])
        except KeyError as exc:
            raise SemanticIdError(f"{self.name}: saved state lacks {exc}") from None
        prefix = "graph.weights."
        self.graph_weights = {k[len(prefix):]: np.array(v) for k, v in arrays.items() if k.startswith(prefix)}
        super()._set_state(meta, {k: v for k, v in arrays.items() if not k.startswith("graph.")})

