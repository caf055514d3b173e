"""DEALRec's per-sample scores, and the coreset scores it is compared with.

* :func:`influence_scores` - the influence of removing a sample on the surrogate's empirical risk (Koh & Liang):
  ``<H^-1 v, grad l(z)>`` with ``v`` the mean training-loss gradient, every gradient restricted to ONE weight matrix
  (DEALRec: the attention output projection of SASRec's second block), ``H^-1 v`` estimated by LiSSA
  (``h <- v + (1 - damp) h - H h / scale``, one sampled Hessian-vector product per step) and seeded, which the
  released code is not. The per-sample inner products come from one forward-mode pass per batch (a directional
  derivative along ``H^-1 v``), not from per-sample gradients.
* :func:`linear_grad_norms` - per-sample gradient norms of ``nn.Linear`` weights in one batched backward (the
  "ghost norm" identity ``||sum_t d_t x_t^T||^2 = sum_{t,t'} (d_t.d_t')(x_t.x_t')``). It gives DEALRec's effort
  score (the LLM's gradient norm on its last LoRA layer) and GraNd (the surrogate's gradient norm).
* :func:`el2n_scores` - EL2N: the L2 norm of the surrogate's error vector ``softmax(logits) - onehot``.
* :func:`minmax` - the min-max normalisation before mixing ``I + lambda * E``.

Every scorer takes ``sample_losses(rows) -> (B,)`` per-sample losses (sum-decomposable: no batch statistics), so
the surrogate and the LLM plug in the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from tqdm.auto import tqdm

SampleLosses = Callable[[np.ndarray], torch.Tensor]


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield np.arange(start, min(n, start + size))


def mean_gradient(sample_losses: SampleLosses, param: torch.Tensor, n: int, batch_size: int = 256) -> torch.Tensor:
    """v = the gradient of the mean loss over all ``n`` samples with respect to ``param``."""
    v = torch.zeros_like(param)
    for rows in _batches(n, batch_size):
        (g,) = torch.autograd.grad(sample_losses(rows).sum(), param)
        v += g
    return v / n


def lissa_inverse_hvp(sample_losses: SampleLosses, param: torch.Tensor, v: torch.Tensor, n: int, *,
                      depth: int = 500, damp: float = 0.01, scale: float = 25.0, hvp_samples: int = 1,
                      seed: int = 0, progress: bool = False) -> torch.Tensor:
    """LiSSA's estimate of ``(H + damp * scale * I)^-1 v``, H the Hessian of the mean loss in ``param``.

    Each of ``depth`` steps takes the Hessian-vector product of ``hvp_samples`` seeded random samples' mean loss
    (1 as in DEALRec's code; ``n`` with ``hvp_samples >= n`` uses every sample: the exact recursion, for tests).
    The recursion converges when ``scale`` exceeds H's largest eigenvalue."""
    rng = np.random.default_rng(seed)
    h = v.clone()
    for _ in tqdm(range(depth), desc="LiSSA", disable=not progress, leave=False):
        rows = np.arange(n) if hvp_samples >= n else rng.choice(n, size=hvp_samples, replace=False)
        (g,) = torch.autograd.grad(sample_losses(rows).mean(), param, create_graph=True)
        (hv,) = torch.autograd.grad((g * h).sum(), param)
        h = v + (1.0 - damp) * h - hv.detach() / scale
        if not torch.isfinite(h).all():
            raise FloatingPointError(f"LiSSA diverged after {_ + 1} steps: raise `scale` (now {scale}) above the "
                                     "Hessian's largest eigenvalue")
    return h / scale


@contextmanager
def _swapped(module: nn.Module, name: str, tensor: torch.Tensor):
    """``module``'s parameter ``name`` (dotted) reads as ``tensor`` inside the block."""
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    saved = owner._parameters[leaf]
    owner._parameters[leaf] = tensor
    try:
        yield
    finally:
        owner._parameters[leaf] = saved


def directional_derivatives(sample_losses: SampleLosses, module: nn.Module, name: str, direction: torch.Tensor,
                            n: int, batch_size: int = 256) -> np.ndarray:
    """``<direction, grad l_i>`` for every sample i, by forward-mode AD: parameter ``name`` of ``module`` carries
    ``direction`` as its tangent and each batch's per-sample losses come out with their directional derivatives.
    (Grad mode stays on: under ``no_grad`` torch's fused Transformer fast path would skip the tangent.)"""
    param = module.get_parameter(name)
    out = np.empty(n, dtype=np.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(param.detach(), direction.to(param))
        with _swapped(module, name, dual):
            for rows in _batches(n, batch_size):
                tangent = fwAD.unpack_dual(sample_losses(rows)).tangent
                if tangent is None:
                    raise RuntimeError(f"the losses do not depend on parameter {name!r}")
                out[rows] = tangent.detach().double().cpu().numpy()
    return out


def influence_scores(sample_losses: SampleLosses, module: nn.Module, name: str, n: int, *, depth: int = 500,
                     damp: float = 0.01, scale: float = 25.0, hvp_samples: int = 1, seed: int = 0,
                     batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """DEALRec's influence score of each of ``n`` samples: ``<H^-1 v, grad l(z)>`` in one weight matrix, the
    parameter ``name`` of ``module`` (e.g. ``encoder.layers.1.self_attn.out_proj.weight`` of SASRec).

    Removing z changes the empirical risk by about ``(1/n) <grad L, H^-1 grad l(z)>``: a high score means the
    model needs z. The paper's ``-1/n`` and sign are dropped as in its code; only the order matters after
    :func:`minmax`."""
    param = module.get_parameter(name)
    v = mean_gradient(sample_losses, param, n, batch_size)
    s = lissa_inverse_hvp(sample_losses, param, v, n, depth=depth, damp=damp, scale=scale,
                          hvp_samples=hvp_samples, seed=seed, progress=progress)
    return directional_derivatives(sample_losses, module, name, s, n, batch_size)


class _GhostNorms:
    """Hooks on ``nn.Linear`` modules that add up each sample's squared weight-gradient norm during a backward of
    the summed per-sample losses (inputs (B, ..., in), outputs (B, ..., out); bias gradients included)."""

    def __init__(self, modules: Sequence[nn.Linear]):
        self.sq: torch.Tensor | None = None
        self.handles = [m.register_forward_hook(self._forward) for m in modules]

    def _forward(self, module, inputs, output):
        x = inputs[0].detach()
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, in)

        def backward(grad):
            d = grad.detach().reshape(grad.shape[0], -1, grad.shape[-1]).to(x)  # (B, T, out)
            sq = ((d @ d.transpose(1, 2)) * (x @ x.transpose(1, 2))).sum((1, 2))
            if module.bias is not None and module.bias.requires_grad:
                sq = sq + d.sum(1).pow(2).sum(1)
            self.sq = sq if self.sq is None else self.sq + sq

        if output.requires_grad:
            output.register_hook(backward)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def linear_grad_norms(sample_losses: SampleLosses, modules: Sequence[nn.Linear], n: int,
                      batch_size: int = 32, progress: bool = False, desc: str = "gradient norms") -> np.ndarray:
    """``||grad l_i||_2`` over the weights (and biases) of ``modules`` for each of ``n`` samples, a batched backward
    per ``batch_size`` samples. The modules' weights must require grad; other parameters may be frozen."""
    if not modules:
        raise ValueError("linear_grad_norms: no nn.Linear module given")
    out = np.empty(n, dtype=np.float64)
    ghost = _GhostNorms(modules)
    params = [m.weight for m in modules]
    try:
        for rows in tqdm(list(_batches(n, batch_size)), desc=desc, disable=not progress, leave=False):
            ghost.sq = None
            torch.autograd.grad(sample_losses(rows).sum(), params, allow_unused=True)
            out[rows] = ghost.sq.clamp_min(0).sqrt().double().cpu().numpy()
    finally:
        ghost.remove()
    return out


def el2n_scores(sample_logits: Callable[[np.ndarray], torch.Tensor], targets: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
    """EL2N (Paul et al., 2021): ``||softmax(logits_i) - onehot(target_i)||_2`` for every sample."""
    n = len(targets)
    out = np.empty(n, dtype=np.float64)
    with torch.no_grad():
        for rows in _batches(n, batch_size):
            p = torch.softmax(sample_logits(rows).float(), dim=-1)
            p[torch.arange(len(rows)), torch.as_tensor(targets[rows])] -= 1.0
            out[rows] = p.norm(dim=1).double().cpu().numpy()
    return out


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores rescaled to [0, 1] (all zeros when they are all equal)."""
    s = np.asarray(scores, dtype=np.float64)
    span = s.max() - s.min()
    return (s - s.min()) / span if span > 0 else np.zeros_like(s)
