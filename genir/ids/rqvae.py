"""RQ-VAE semantic IDs (TIGER, Rajput et al., NeurIPS 2023), on vector-quantize-pytorch's ``ResidualVQ``.

An MLP encoder maps an item's content embedding x (d) to a latent z (``latent_dim``); ``num_levels`` residual
quantizers, each with its own codebook, pick codes c_l = argmin_k ||r_{l-1} - e^l_k|| with r_0 = z and
r_l = r_{l-1} - e^l_{c_l}; an MLP decoder reconstructs x from z_q = sum_l e^l_{c_l}. The codes (c_1..c_L) are
the item's semantic ID.

Loss per batch = ||x - x_hat||^2 + beta * sum_l ||r_{l-1} - sg(e^l_{c_l})||^2 (squared norms per item, averaged
over the batch), gradients through the quantizer by the straight-through estimator. Codebooks are k-means
initialised on the first batch and codes unused for a while are re-seeded from the batch
(``threshold_ema_dead_code``), both to fight codebook collapse.

Deviations from TIGER (all configurable):

* codebooks are learned by exponential moving averages of their assigned residuals (``decay``), the
  vector-quantize-pytorch default and VQ-VAE-2's rule, instead of the codebook-loss term ||sg(r) - e||^2;
* dead-code re-seeding is not in TIGER;
* defaults train with Adam, lr 1e-3, for ``epochs`` epochs; TIGER used Adagrad, lr 0.4, ~20k epochs
  (``optimizer: adagrad, lr: 0.4``), which diverged on MovieLens-100K MiniLM features with this loss scaling;
* ``shared_codebook`` (one codebook for all levels, as AVG's vokens) and ``rotation_trick`` (a gradient
  estimator that replaces straight-through) are extra options, off by default;
* ``align_weight`` > 0 adds ``align_weight * (1 - cos(W z_q, p))`` for each item's paired features ``p``
  (``fit(x, paired=p)``: the caption embedding of an image), a linear head ``W`` trained with it, so codes of
  items with similar captions share prefixes (the semantic alignment of AVG's image tokenizer, in its simplest
  form; the AVG method may replace it with its own loss).

``encode`` runs the network in eval mode (nearest codes, no EMA update, no re-seeding), so it is deterministic;
``fit`` with the same seed, data and device gives the same codes.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from vector_quantize_pytorch import ResidualVQ

from genir.errors import ConfigError, FeatureError
from genir.ids.base import IdScheme, SemanticIdError
from genir.ids.config import SchemeConfig, check_level_list, config_error, level_sizes_of, param

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "adagrad")  # the Trainer's (adamw: no weight decay on biases and norms)


@dataclass
class RQVAEConfig(SchemeConfig):
    num_levels: int = param(3, "number of semantic levels L (TIGER: 3)", min=1, max=16)
    codebook_size: int | list[int] = param(256, "K codes per level, or one K per level (TIGER: 256)",  # noqa: RUF009
                                           min=1)
    latent_dim: int = param(32, "latent / code dimension e_dim (TIGER: 32, MMGRec: 4)", min=1)
    hidden_dims: list[int] = param([512, 256, 128], "encoder hidden widths; the decoder mirrors them",  # noqa: RUF009
                                   min=1)
    dropout: float = param(0.0, "dropout after each hidden layer", min=0.0, max=0.99)
    beta: float = param(0.25, "commitment loss weight (TIGER: 0.25)", min=0.0)
    decay: float = param(0.8, "EMA decay of the codebook updates", min=0.0, max=1.0)
    kmeans_init: bool = param(True, "k-means initialise the codebooks on the first batch")
    kmeans_iters: int = param(10, "iterations of that k-means", min=1)
    threshold_ema_dead_code: float = param(2.0, "re-seed codes whose EMA batch count falls below this; 0 = never",
                                           min=0.0)
    shared_codebook: bool = param(False, "one codebook for all levels (AVG vokens)")
    align_weight: float = param(0.0, "weight of the alignment of the quantized latent with paired features "
                                "(caption embeddings of images, as AVG's tokenizer); 0 = none", min=0.0)
    rotation_trick: bool = param(False, "rotation-trick gradients instead of straight-through")
    epochs: int = param(200, "training epochs (TIGER: ~20k)", min=1)
    batch_size: int = param(1024, "items per batch (TIGER: 1024)", min=1)
    lr: float = param(1e-3, "learning rate (TIGER: 0.4 with adagrad)", min=0.0)
    optimizer: str = param("adam", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = param(0.0, "weight decay", min=0.0)
    seed: int = param(42, "seed of initialisation, k-means init and batch order", min=0)
    device: str = param("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1, mps ...")
    progress: bool = param(True, "show a progress bar while training")

    def check(self, source: str, prefix: str) -> None:
        check_level_list(self, source, prefix)
        if self.shared_codebook and len(set(level_sizes_of(self.codebook_size, self.num_levels))) > 1:
            raise config_error(source, prefix, "codebook_size", "one size for all levels with shared_codebook",
                               self.codebook_size)


class RQVAEOutput(NamedTuple):
    x_hat: torch.Tensor  # (B, d) reconstruction
    z: torch.Tensor  # (B, e) latent
    z_q: torch.Tensor  # (B, e) quantized latent, sum of the chosen codes (straight-through in training)
    codes: torch.Tensor  # (B, L) int64
    commit_loss: torch.Tensor  # (L,) beta * mean over batch and dims of ||r_{l-1} - sg(e)||^2, per level


def mlp(dims: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers dims[0] -> ... -> dims[-1] with ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class RQVAEModel(nn.Module):
    """Encoder MLP -> ResidualVQ -> decoder MLP."""

    def __init__(self, input_dim: int, config: RQVAEConfig):
        super().__init__()
        c = config
        dims = [input_dim, *c.hidden_dims, c.latent_dim]
        self.encoder = mlp(dims, c.dropout)
        self.decoder = mlp(dims[::-1], c.dropout)
        sizes = level_sizes_of(c.codebook_size, c.num_levels)
        self.quantizer = ResidualVQ(
            dim=c.latent_dim, num_quantizers=c.num_levels,
            codebook_size=sizes[0] if len(set(sizes)) == 1 else tuple(sizes),
            shared_codebook=c.shared_codebook, kmeans_init=c.kmeans_init, kmeans_iters=c.kmeans_iters,
            threshold_ema_dead_code=c.threshold_ema_dead_code, decay=c.decay, commitment_weight=c.beta,
            rotation_trick=c.rotation_trick,
        )

    def forward(self, x: torch.Tensor) -> RQVAEOutput:
        z = self.encoder(x)  # (B, e)
        z_q, codes, commit_loss = self.quantizer(z)  # (B, e), (B, L), (L,)
        return RQVAEOutput(self.decoder(z_q), z, z_q, codes, commit_loss)


class RQVAE(IdScheme):
    """TIGER's RQ-VAE tokenizer. ``fit(features, progress=None, device=None)`` trains it (the two keywords
    override the config for this call); ``history`` then holds one record per epoch (mean loss, recon, quant)."""

    name = "rqvae"
    config_class = RQVAEConfig

    FIT_CONTEXT = ("progress",)

    @property
    def fit_context(self) -> tuple[str, ...]:
        return (*self.FIT_CONTEXT, "paired") if self.config.align_weight > 0 else self.FIT_CONTEXT

    def __init__(self, config: RQVAEConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.model: RQVAEModel | None = None
        self.history: list[dict] = []

    @property
    def level_sizes(self) -> list[int]:
        return level_sizes_of(self.config.codebook_size, self.config.num_levels)

    @property
    def device(self) -> torch.device:
        self._require_fitted()
        return next(self.model.parameters()).device

    # -- training -----------------------------------------------------------------------------------------------
    def fit(self, features, *, progress: bool | None = None, device: str | None = None, paired=None) -> RQVAE:
        self.num_features = None
        x_np = self._check_features(features)  # (N, d)
        if (paired is None) != (self.config.align_weight == 0):
            raise SemanticIdError(f"{self.name}: align_weight={self.config.align_weight} needs paired features "
                                  "(fit(x, paired=...)), and paired features need align_weight > 0")
        if paired is not None:
            paired = np.asarray(paired, dtype=np.float32)
            if paired.ndim != 2 or len(paired) != len(x_np) or not np.isfinite(paired).all():
                raise FeatureError(f"{self.name}: paired features must be a finite ({len(x_np)}, d') matrix, got "
                                   f"shape {paired.shape}")
        c = self.config
        dev = resolve_device(device or c.device)
        show = c.progress if progress is None else progress
        n = len(x_np)
        fork = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=fork):
            torch.manual_seed(c.seed)
            self.model = RQVAEModel(x_np.shape[1], c).to(dev)
            self._paired = None
            if paired is not None:
                self.model.align = nn.Linear(c.latent_dim, paired.shape[1]).to(dev)
                self._paired = torch.from_numpy(paired).to(dev)
            trainable = _TokenizerTraining(self, torch.from_numpy(x_np).to(dev), c.batch_size, c.seed)
            records = self._train(trainable, dev, show)
        self.history = [{"epoch": r["epoch"], **{k: r[k] for k in ("loss", "recon", "quant")}} for r in records]
        sums = self.history[-1]
        self.model.eval()
        self.num_features = x_np.shape[1]
        log.info("%s: trained %d epochs on %d items; final loss %.5f (recon %.5f, quant %.5f)", self.name,
                 c.epochs, n, sums["loss"], sums["recon"], sums["quant"])
        return self

    def _train(self, trainable: nn.Module, dev: torch.device, show: bool) -> list[dict]:
        """Train with the one Trainer (no evaluator: every epoch, the last weights are the result). The global RNG
        is left as seeded at construction (``seed_rng=False``): k-means initialisation and dead-code re-seeding
        draw from it, and the batch order comes from the scheme's own generator."""
        from genir.training import Callback, Trainer, TrainerConfig

        c = self.config
        if dev.type == "cuda" and (dev.index or 0) != (torch.cuda.current_device() if torch.cuda.is_available() else 0):
            raise ConfigError(f"{self.name}: device {dev} is not the accelerator's device; set CUDA_VISIBLE_DEVICES")
        bar = tqdm(total=c.epochs, desc=f"{self.name} fit", disable=not show, leave=False)

        class EpochBar(Callback):
            def on_epoch_end(self, trainer, record):
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", recon=f"{record['recon']:.4f}")

        config = TrainerConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                               optimizer=c.optimizer, seed=c.seed, seed_rng=False, cpu=dev.type == "cpu",
                               progress=False)
        try:
            result = Trainer(trainable, None, config=config, callbacks=(EpochBar(),)).fit()
        finally:
            bar.close()
        return result.history

    def training_loss(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses of one batch ``x`` (B, d) of items ``idx`` (B,): ``loss`` = ``recon`` + ``quant``.

        The extension point of RQ-VAE variants: AVG's vokens add an alignment term to the caption embedding of
        the items ``idx``; MMGRec's Graph RQ-VAE feeds graph-encoder outputs as ``features`` and needs nothing
        here. ``quant`` scales the library's per-dimension mean to a squared norm per item, like ``recon``.
        """
        out = self.model(x)
        recon = (out.x_hat - x).pow(2).sum(-1).mean()
        quant = out.commit_loss.sum() * self.config.latent_dim
        losses = {"loss": recon + quant, "recon": recon, "quant": quant}
        if getattr(self, "_paired", None) is not None:
            target = self._paired[idx.to(self._paired.device)]
            align = 1.0 - F.cosine_similarity(self.model.align(out.z_q), target, dim=-1).mean()
            losses["loss"] = losses["loss"] + self.config.align_weight * align
        return losses

    # -- inference ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def forward_all(self, features, batch_size: int = 8192) -> RQVAEOutput:
        """Eval-mode outputs for all rows, computed in chunks, on CPU; ``commit_loss`` is left zero."""
        self._require_fitted()
        x = torch.from_numpy(self._check_features(features))  # (N, d)
        self.model.eval()
        parts = [self.model(chunk.to(self.device)) for chunk in x.split(batch_size)]
        return RQVAEOutput(*(torch.cat([getattr(p, f).cpu() for p in parts]) for f in RQVAEOutput._fields[:4]),
                           torch.zeros(self.num_levels))

    def encode(self, features) -> np.ndarray:
        return self.forward_all(features).codes.numpy().astype(np.int64)  # (N, L)

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray:
        """(N, d) reconstruction from (N, L) codes: decoder(sum of the codes' vectors)."""
        self._require_fitted()
        c = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=self.device)  # (N, L)
        z_q = self.model.quantizer.get_output_from_indices(c)  # (N, e)
        return self.model.decoder(z_q).cpu().numpy()

    @property
    def codebooks(self) -> list[np.ndarray]:
        """Per level the (K_l, e) code vectors, e.g. to initialise a language model's ID-token embeddings as
        AVG does."""
        self._require_fitted()
        return [layer._codebook.embed[0].detach().cpu().numpy().copy() for layer in self.model.quantizer.layers]

    def reconstruction_error(self, features) -> float:
        """Mean over items of ||x - decoder(z_q)||^2 (eval mode)."""
        x = torch.from_numpy(self._check_features(features))
        return float((self.forward_all(x).x_hat - x).pow(2).sum(-1).mean())

    # -- state --------------------------------------------------------------------------------------------------
    def _get_state(self):
        # the alignment head only shapes training; encoding does not use it
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()
                  if not k.startswith("align.")}
        return {"history": self.history}, arrays

    def _set_state(self, meta, arrays):
        self.history = list(meta.get("history", []))
        self.model = RQVAEModel(self.num_features, self.config)
        try:
            self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        except RuntimeError as exc:
            raise SemanticIdError(f"{self.name}: saved weights do not match the config: {exc}") from None
        self.model.to(resolve_device(self.config.device)).eval()


class _TokenizerTraining(nn.Module):
    """What the Trainer trains when a scheme fits: the scheme's network, its loss (``scheme.training_loss``, the
    extension point of RQ-VAE variants) and its own batches: every epoch a permutation of the items from a
    generator seeded with the scheme's seed, cut into near-equal batches (no tiny last batch to skew the EMA)."""

    def __init__(self, scheme, x: torch.Tensor, batch_size: int, seed: int):
        super().__init__()
        self.scheme = scheme
        self.net = scheme.model  # registered, so the Trainer optimises its parameters
        self.x = x  # (N, d) on the training device
        self.num_train_batches = max(1, -(-len(x) // batch_size))
        self.order = torch.Generator().manual_seed(seed)

    def train_batches(self, epoch: int):
        for idx in torch.randperm(len(self.x), generator=self.order).tensor_split(self.num_train_batches):
            yield self.x[idx.to(self.x.device)], idx

    def forward(self, batch) -> dict[str, torch.Tensor]:
        x, idx = batch
        return self.scheme.training_loss(x, idx)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {exc}") from None
