"""On-disk cache of per-item feature matrices, keyed by a content hash.

A matrix is stored as ``<root>/<kind>/<key>.npy`` with a JSON sidecar ``<key>.json`` (shape, dtype, params,
creation time). The key is the sha256 of the feature kind, the dataset fingerprint, every parameter that changes
the result and :data:`FORMAT_VERSION`, so a changed input can never hit an old entry; bump the version when a
feature's computation changes. The root is ``$GENIR_CACHE`` or ``~/.cache/genir/features``.

Both files are written to a temporary name and moved into place with ``os.replace`` (the sidecar last), so a
reader never sees half a file and concurrent writers of the same key leave one whole entry. An entry that cannot
be read or disagrees with its sidecar is recomputed and overwritten, never returned. If the cache folder cannot
be written the result is still returned, with a warning: the cache is an optimization, not a requirement.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from genir.atomic import atomic_write

FORMAT_VERSION = 1
ENV_VAR = "GENIR_CACHE"


def cache_root() -> Path:
    """``$GENIR_CACHE`` if set (read at each call, so tests can point it elsewhere), else the user cache."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genir" / "features"


def cache_key(kind: str, params: dict, dataset_fingerprint: str) -> str:
    """sha256 hex digest of (kind, fingerprint, params, format version); params must be JSON-serializable."""
    payload = json.dumps(
        {"kind": kind, "dataset": dataset_fingerprint, "params": params, "format": FORMAT_VERSION},
        sort_keys=True, separators=(",", ":"), default=_json_default,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def entry_paths(kind: str, params: dict, dataset_fingerprint: str) -> tuple[Path, Path]:
    """(matrix path, sidecar path) of an entry; they need not exist."""
    key = cache_key(kind, params, dataset_fingerprint)
    folder = cache_root() / kind
    return folder / f"{key}.npy", folder / f"{key}.json"


def cached(kind: str, params: dict, dataset_fingerprint: str, compute_fn: Callable[[], np.ndarray]) -> np.ndarray:
    """The stored matrix for this key if a valid entry exists, else ``compute_fn()`` stored and returned."""
    npy, meta = entry_paths(kind, params, dataset_fingerprint)
    hit = _read(npy, meta)
    if hit is not None:
        return hit
    value = np.ascontiguousarray(compute_fn())
    try:
        _write(npy, meta, value, {"kind": kind, "dataset": dataset_fingerprint, "params": params})
    except OSError as exc:
        warnings.warn(f"{npy.parent}: cannot write the feature cache ({exc}); the result is not cached",
                      stacklevel=2)
    return value


def _read(npy: Path, meta: Path) -> np.ndarray | None:
    """The entry's array, or None when it is absent, unreadable or disagrees with its sidecar."""
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        arr = np.load(npy, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # truncated / garbage .npy or .json
        return None
    if not isinstance(info, dict) or list(arr.shape) != info.get("shape") or str(arr.dtype) != info.get("dtype"):
        return None
    return arr


def _write(npy: Path, meta: Path, value: np.ndarray, info: dict) -> None:
    npy.parent.mkdir(parents=True, exist_ok=True)
    sidecar = {**info, "shape": list(value.shape), "dtype": str(value.dtype), "format": FORMAT_VERSION,
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(npy, lambda fh: np.save(fh, value, allow_pickle=False))
    atomic_write(meta, lambda fh: fh.write(json.dumps(sidecar, indent=1, default=_json_default).encode()))


def _json_default(obj):
    """Numpy scalars and paths in params are serialized by value; anything else unknown is an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cache params must be JSON-serializable, got {type(obj).__name__}: {obj!r}")
