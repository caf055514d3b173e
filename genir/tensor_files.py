"""Self-checking safetensors files: a SHA-256 of every tensor's name, dtype, shape and bytes is stored in the file's
own metadata when it is written and recomputed when it is read, so a bit flip or a truncation anywhere in a weights
file is refused with the file's name instead of loading silently different weights.

safetensors already refuses a damaged header, but a flipped byte inside the tensor data parses fine; an index dir's
``manifest.json`` guards the index files the same way, and this guards the files that live outside any manifest (a
run's ``best_model.safetensors`` and ``inputs.safetensors``, a document index's model). Files written before this
digest existed (no ``genir.sha256`` key in the metadata) still load, unchecked. Writes are atomic
(:func:`genir.atomic.atomic_write`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from genir.atomic import atomic_write
from genir.errors import CheckpointError

DIGEST_KEY = "genir.sha256"


def _raw(value) -> tuple[str, tuple[int, ...], bytes]:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        return str(t.dtype).removeprefix("torch."), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()
    a = np.ascontiguousarray(value)
    return str(a.dtype), tuple(a.shape), a.tobytes()


def tensors_digest(tensors: dict) -> str:
    """SHA-256 over the sorted names, each with its dtype, shape and bytes (torch tensors or numpy arrays)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape, data = _raw(tensors[name])
        h.update(f"{name}\0{dtype}\0{shape}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (all torch or all numpy) to ``path`` atomically, with their digest in the metadata."""
    meta = {**(metadata or {}), DIGEST_KEY: tensors_digest(tensors)}
    if tensors and all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        storages = [v.untyped_storage().data_ptr() for v in tensors.values()]
        if len(set(storages)) < len(storages):  # tied or sliced tensors: safetensors stores no shared memory
            tensors = {k: v.clone() for k, v in tensors.items()}
    blob = save(tensors, metadata=meta)
    atomic_write(Path(path), lambda fh: fh.write(blob))


def load_tensors(path: str | Path, framework: str = "pt", device: str = "cpu") -> dict:
    """Read ``path`` (``framework`` "pt" for torch tensors, "np" for numpy arrays) and check its digest; a missing,
    damaged or altered file raises :class:`CheckpointError` naming it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        with safe_open(str(path), framework=framework, device=device) as fh:
            expected = (fh.metadata() or {}).get(DIGEST_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118  safe_open has no items()
    except Exception as exc:  # noqa: BLE001  safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
    if expected is not None and tensors_digest(tensors) != expected:
        raise CheckpointError(f"{path}: sha256 of the tensors does not match the one stored when it was written "
                              "(the file is damaged; retrain or restore it)")
    return tensors
