"""Per-image fidelity of generated pictures against exact targets: PSNR and SSIM from torchmetrics.

Images are (n, H, W, 3) uint8 arrays or (n, 3, H, W) float tensors in [0, 1]; both metrics use a data range of
1.0 (float32: double-precision convolutions are ~100x slower on CPU; SSIM of identical images then reads
1 - 1e-4 rather than 1), SSIM its standard 11-pixel Gaussian window (sigma 1.5).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_float(images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (n, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return images.detach().float().clamp(0, 1)


def psnr(preds, targets) -> np.ndarray:
    """(n,) PSNR in dB of each prediction against its target (identical images: inf)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    p, t = _as_float(preds), _as_float(targets)
    if p.shape != t.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} differ in shape")
    return peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3)).numpy()


def ssim(preds, targets) -> np.ndarray:
    """(n,) structural similarity of each prediction against its target."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _as_float(preds), _as_float(targets)
    if p.shape != t.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(t.shape)} differ in shape")
    return structural_similarity_index_measure(p, t, data_range=1.0, reduction="none").numpy()
