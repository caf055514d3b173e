"""The editor G(x, t) and its training objective L_single + L_recon + lambda(t) L_multi.

``ConditionalUNet``: a small U-Net whose blocks are modulated (FiLM) by the instruction's sentence embedding, with
an MLP over the whole bottleneck so that global moves (mirror, quarter turns, shrinking) can be expressed; it
predicts a residual added to the input (zero at initialisation: the untrained editor is the identity).

``MultiRoundEditor`` wraps it for the one :class:`~genir.training.Trainer`: it draws its own batches from an edit
task (``train_batches``) and ``forward(batch)`` returns the losses:

* L_single = ||G(x, t_a) - T_a||^2 on one-round examples;
* L_recon = ||G(x, t_id) - x||^2 with an identity instruction ("", "no change" ...);
* L_multi, on a share of batches (the epoch log's ``l_multi`` / ``multi_batch`` is its mean over those): y_ab = G(G(x, t_a), t_b) and y_ba = G(G(x, t_b), t_a) are each compared with
  the exact target of the chain and with each other (weight ``consistency_weight``); weighted by lambda(t).

Losses are mean squared errors on pixels in [0, 1] (what PSNR measures). Mean absolute errors were tried first and
left the editor at the identity: for one edit most pixels keep their value, so the median change of a pixel is 0
and L1 has no gradient pulling an instruction-blind editor away from it. The second round takes the first round's output clamped to
[0, 1], as it would be at test time, and gradients flow through both rounds.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genir.methods.multiround.config import MultiRoundConfig


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(n, S, S, 3) uint8 -> (n, 3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(n, 3, S, S) float -> (n, S, S, 3) uint8 (clamped, rounded)."""
    return images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class FiLMBlock(nn.Module):
    """Two 3x3 convolutions with group norm; the first is scaled and shifted per channel by the condition."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(self.conv1(x)) * (1 + scale) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class ConditionalUNet(nn.Module):
    """(B, 3, S, S) image + (B, cond_dim) condition -> (B, 3, S, S) residual. S must be divisible by
    2 ** len(channels)."""

    def __init__(self, size: int, channels: list[int], cond_dim: int):
        super().__init__()
        if size % (2 ** len(channels)):
            raise ValueError(f"image size {size} is not divisible by 2^{len(channels)}")
        self.register_buffer("coords", _coordinates(size), persistent=False)  # (2, S, S): where each pixel is
        self.down = nn.ModuleList()
        c_prev = 3 + 2
        for c in channels:
            self.down.append(FiLMBlock(c_prev, c, cond_dim))
            c_prev = c
        side = size // 2 ** len(channels)
        flat = channels[-1] * side * side
        self.mix = nn.Sequential(nn.Linear(flat + cond_dim, flat), nn.SiLU(), nn.Linear(flat, flat))
        self.up = nn.ModuleList()
        for c_skip in reversed(channels):
            self.up.append(FiLMBlock(c_prev + c_skip, c_skip, cond_dim))
            c_prev = c_skip
        self.out = nn.Conv2d(c_prev, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], dim=1)
        skips = []
        for block in self.down:
            h = block(h, cond)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        b, c, hh, ww = h.shape
        h = h + self.mix(torch.cat([h.flatten(1), cond], dim=1)).view(b, c, hh, ww)
        for block, skip in zip(self.up, reversed(skips)):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skip], dim=1), cond)
        return self.out(h)


def _coordinates(size: int) -> torch.Tensor:
    axis = torch.linspace(-1, 1, size)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"))


class MultiRoundEditor(nn.Module):
    """G(x, t) over a fixed instruction vocabulary: ``text_embeddings`` (V, D) are the frozen sentence embeddings
    of ``task.vocabulary`` (computed once); ``edit(x, text_ids)`` runs one round."""

    def __init__(self, config: MultiRoundConfig, task, text_embeddings: np.ndarray):
        super().__init__()
        self.config = config.validate("multiround")
        self.task = task
        emb = torch.as_tensor(np.asarray(text_embeddings, dtype=np.float32))
        if emb.ndim != 2 or len(emb) != len(task.vocabulary):
            raise ValueError(f"text_embeddings: expected ({len(task.vocabulary)}, d), got {tuple(emb.shape)}")
        self.register_buffer("text_embeddings", emb)
        self.text_proj = nn.Sequential(nn.Linear(emb.shape[1], config.cond_dim), nn.SiLU(),
                                       nn.Linear(config.cond_dim, config.cond_dim))
        self.unet = ConditionalUNet(task.size, list(config.channels), config.cond_dim)
        self.total_steps = config.batches_per_epoch  # set by train_editor to epochs * batches_per_epoch

    @property
    def num_train_batches(self) -> int:
        return self.config.batches_per_epoch

    def edit(self, x: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        """One round: (B, 3, S, S) in [0, 1] + (B,) instruction ids -> (B, 3, S, S) (not clamped)."""
        cond = self.text_proj(self.text_embeddings[text_ids])
        return x + self.unet(x, cond)

    def multi_round(self, x: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """G(clamp(G(x, first)), second)."""
        return self.edit(self.edit(x, first).clamp(0, 1), second)

    # -- training ------------------------------------------------------------------------------------------------
    def carries_multi(self, step: int) -> bool:
        """Whether global step ``step`` carries L_multi: an exact share ``multi_share`` of the steps, spread out."""
        c = self.config
        if c.lambda_mode == "none" or c.n_chains == 0:
            return False
        return int((step + 1) * c.multi_share) > int(step * c.multi_share)

    def train_batches(self, epoch: int):
        c = self.config
        rng = np.random.default_rng([c.seed, epoch])
        for i in range(c.batches_per_epoch):
            step = epoch * c.batches_per_epoch + i
            multi = self.carries_multi(step)
            b = self.task.train_batch(rng, c.n_single, c.n_recon, c.n_chains if multi else 0)
            batch = {"single_x": to_tensor(b.single_x), "single_text": torch.from_numpy(b.single_text),
                     "single_y": to_tensor(b.single_y), "recon_x": to_tensor(b.recon_x),
                     "recon_text": torch.as_tensor(b.recon_text, dtype=torch.long),
                     "lam": torch.tensor(c.lam(step / max(1, self.total_steps - 1)))}
            if multi and len(b.chain_x):
                batch.update(chain_x=to_tensor(b.chain_x), chain_a=torch.from_numpy(b.chain_a),
                             chain_b=torch.from_numpy(b.chain_b), chain_y=to_tensor(b.chain_y))
            device = self.text_embeddings.device
            yield {k: v.to(device) for k, v in batch.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        c = self.config
        x = torch.cat([batch["single_x"], batch["recon_x"]])
        texts = torch.cat([batch["single_text"], batch["recon_text"]])
        out = self.edit(x, texts)
        n = len(batch["single_x"])
        l_single = F.mse_loss(out[:n], batch["single_y"])
        l_recon = F.mse_loss(out[n:], batch["recon_x"]) if len(batch["recon_x"]) else out.sum() * 0
        loss = l_single + l_recon
        zero = torch.zeros((), device=loss.device)
        parts = {"l_single": l_single.detach(), "l_recon": l_recon.detach(), "l_multi": zero, "multi_batch": zero,
                 "multi_forward_s": zero}
        if "chain_x" in batch:
            t0 = time.perf_counter()
            cx, ca, cb = batch["chain_x"], batch["chain_a"], batch["chain_b"]
            both = self.multi_round(torch.cat([cx, cx]), torch.cat([ca, cb]), torch.cat([cb, ca]))
            y_ab, y_ba = both.chunk(2)
            target = batch["chain_y"]
            l_multi = 0.5 * (F.mse_loss(y_ab, target) + F.mse_loss(y_ba, target)) \
                + c.consistency_weight * F.mse_loss(y_ab, y_ba)
            loss = loss + batch["lam"] * l_multi
            parts.update(l_multi=l_multi.detach(), multi_batch=torch.ones((), device=loss.device),
                         multi_forward_s=torch.tensor(time.perf_counter() - t0, device=loss.device))
        return {"loss": loss, **parts, "lambda": batch["lam"].detach()}
