"""AVG's image tokenizer (Li et al., "Revolutionizing Text-to-Image Retrieval as Autoregressive Token-to-Voken
Generation", arXiv 2407.17274): an RQ-VAE over image features whose codes ("vokens") are aligned with both the
visual information (reconstruction) and the semantics of the image's captions.

It is :class:`~genir.ids.rqvae.RQVAE` with three changes, as the paper's released tokenizer has them:

* one codebook shared by every level (``shared_codebook: true``; per-level codebooks are the option), so the
  vokens are one vocabulary ``c_0..c_{K-1}`` at every position, and ``latent_dim`` is the generator's hidden size,
  so the codebook vectors can initialise the generator's voken embeddings;
* the semantic-alignment term: ``align_weight * ||decoder(z_q) - p||^2`` toward the paired caption embedding
  ``p`` of each image (``align_target: output``, the released code's default ``text_loss_pos='after'``: image and
  caption features live in one aligned space, here the LiT-style two-tower's), or toward a linear head of the
  quantized latent (``align_target: latent``, the class default of the released code), both as squared norms per
  image like the reconstruction;
* images without a training caption have an all-NaN paired row: they get no alignment term (a test image's caption
  is never trained on, not even by the tokenizer), only reconstruction and commitment.

Deviations kept from :class:`RQVAE` (documented there): EMA codebook updates instead of the codebook-loss term,
dead-code re-seeding, no BatchNorm in the MLPs. IDs are made unique by the shared collision handling
(:mod:`genir.ids.collisions`), which the released code lacks (several images then shared one voken string).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genir.errors import FeatureError
from genir.ids.config import param
from genir.ids.rqvae import RQVAE, RQVAEConfig

ALIGN_TARGETS = ("output", "latent")


@dataclass
class VokenConfig(RQVAEConfig):
    num_levels: int = param(3, "voken positions L (AVG: 4 on Flickr30k / COCO)", min=1, max=16)
    codebook_size: int | list[int] = param(256, "K vokens (AVG: 1024)", min=1)  # noqa: RUF009
    latent_dim: int = param(128, "code dimension = the generator's hidden size (AVG: 768 for T5-base)", min=1)
    hidden_dims: list[int] = param([512, 256], "encoder hidden widths (AVG: 1024, 512); the decoder mirrors "  # noqa: RUF009
                                   "them", min=1)
    dropout: float = param(0.1, "dropout after each hidden layer (AVG: 0.25)", min=0.0, max=0.99)
    shared_codebook: bool = param(True, "one codebook for every level, as AVG; false: one per level")
    align_weight: float = param(1.0, "weight of the caption-alignment term (AVG: 1.0)", min=0.0)
    align_target: str = param("output", "what is pulled toward the caption embedding: the decoder output "
                              "(AVG's default) or a linear head of the quantized latent", choices=ALIGN_TARGETS)
    epochs: int = param(60, "training epochs (AVG: 5,000 at batch 2,048)", min=1)
    batch_size: int = param(1024, "images per batch", min=1)


class VokenTokenizer(RQVAE):
    """AVG's image tokenizer; ``fit(image_features, paired=caption_embeddings)`` with NaN rows for images whose
    captions must not be seen."""

    name = "voken"
    config_class = VokenConfig

    def fit(self, features, *, progress: bool | None = None, device: str | None = None, paired=None
            ) -> VokenTokenizer:
        if paired is not None:
            p = np.asarray(paired, dtype=np.float32)
            if p.ndim != 2 or len(p) != len(np.asarray(features)):
                raise FeatureError(f"{self.name}: paired features must be ({len(np.asarray(features))}, d'), got "
                                   f"shape {p.shape}")
            missing = np.isnan(p).all(axis=1)
            if not np.isfinite(p[~missing]).all():
                raise FeatureError(f"{self.name}: paired features: a row is either all NaN (no caption) or finite")
            if missing.all():
                raise FeatureError(f"{self.name}: no image has a paired caption embedding")
            if self.config.align_target == "output" and p.shape[1] != np.asarray(features).shape[1]:
                raise FeatureError(f"{self.name}: align_target output compares the decoder output "
                                   f"({np.asarray(features).shape[1]} columns) with the caption embeddings "
                                   f"({p.shape[1]}); they must live in one space of one size (or use align_target: "
                                   "latent)")
            self._has_pair = torch.from_numpy(~missing)
            paired = np.where(missing[:, None], 0.0, p).astype(np.float32)
        else:
            self._has_pair = None
        return super().fit(features, progress=progress, device=device, paired=paired)

    def training_loss(self, x: torch.Tensor, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        recon = (out.x_hat - x).pow(2).sum(-1).mean()
        quant = out.commit_loss.sum() * self.config.latent_dim
        losses = {"loss": recon + quant, "recon": recon, "quant": quant}
        if getattr(self, "_paired", None) is not None:
            rows = idx.to(self._paired.device)
            has = self._has_pair.to(self._paired.device)[rows]  # (B,)
            pred = out.x_hat if self.config.align_target == "output" else self.model.align(out.z_q)
            err = (pred - self._paired[rows]).pow(2).sum(-1)  # (B,)
            align = (err * has).sum() / has.sum().clamp_min(1)
            losses["align"] = align
            losses["loss"] = losses["loss"] + self.config.align_weight * align
        return losses
