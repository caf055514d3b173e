"""Hyper-parameters of the multi-round regularized editor (Zeng, Zheng, Wei, Chua, arXiv 2401.08472), sized for a
CPU: a small conditional U-Net on 32x32 clip art instead of the paper's diffusion editor."""

from __future__ import annotations

from dataclasses import dataclass

from genir.config import Config, config_error, param

LAMBDA_MODES = ("none", "constant", "schedule")


@dataclass
class MultiRoundConfig(Config):
    # editor
    channels: list[int] = param([8, 16, 32], "U-Net widths per resolution (32, 16, 8 px); the bottleneck is "  # noqa: RUF009
                                "half the last resolution, mixed globally by an MLP", min=1)
    cond_dim: int = param(128, "width of the instruction embedding after its projection", min=1)
    # batches (per optimizer step)
    n_single: int = param(24, "one-round examples (L_single)", min=1)
    n_recon: int = param(8, "identity-instruction examples (L_recon)", min=0)
    n_chains: int = param(12, "two-round chains on a batch that carries L_multi (each run in both orders)", min=0)
    multi_share: float = param(0.5, "share of batches that carry L_multi (it costs four more editor passes per "
                               "chain)", min=0.0, max=1.0)
    batches_per_epoch: int = param(50, "optimizer steps per trainer epoch (one line of the loss curve)", min=1)
    # L_multi weight lambda(t), t = share of training done
    lambda_mode: str = param("schedule", "none: no L_multi; constant: lambda_constant; schedule: cosine decay from "
                             "lambda_start to lambda_end (multi-round early, single-round late)",
                             choices=LAMBDA_MODES)
    lambda_start: float = param(1.0, "lambda(0) of the schedule", min=0.0)
    lambda_end: float = param(0.1, "lambda(1) of the schedule", min=0.0)
    lambda_constant: float = param(0.55, "constant lambda: the schedule's mean, so both spend the same weight",
                                   min=0.0)
    consistency_weight: float = param(1.0, "weight of |G(G(x,a),b) - G(G(x,b),a)| inside L_multi (the two orders "
                                      "against each other); the rest compares each order with the exact target",
                                      min=0.0)
    seed: int = param(0, "seed of the sampled batches (the trainer's seed sets the initial weights)", min=0)

    def check(self, source: str, prefix: str) -> None:
        if self.lambda_mode != "none" and (self.n_chains == 0 or self.multi_share == 0):
            raise config_error(source, prefix, "n_chains", "> 0 with multi_share > 0 when lambda_mode is not 'none'",
                               self.n_chains)

    def lam(self, t: float) -> float:
        """lambda(t) for t in [0, 1]."""
        import math

        if self.lambda_mode == "none":
            return 0.0
        if self.lambda_mode == "constant":
            return self.lambda_constant
        return self.lambda_end + (self.lambda_start - self.lambda_end) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
