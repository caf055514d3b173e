"""Named per-item feature matrices ("modalities") for multimodal methods, from one spec string.

``"text,kg,cf"`` builds the foundation's cached features; ``"text,image=/data/img.npy"`` adds a user's own matrix
(``.npy`` or parquet, validated by :func:`load_feature_matrix`: rows = items, finite values). Every multimodal
method (MetaMMF, MIG-GT, AD-DRL, MMGRec) reads its inputs through :func:`load_modalities`, so a user-supplied file
is checked the same way everywhere and errors name the file.
"""

from __future__ import annotations

import numpy as np

from genir.data.split import Split
from genir.errors import FeatureError
from genir.features.io import load_feature_matrix


def parse_modalities(spec: str | tuple | list) -> list[tuple[str, str | None]]:
    """``"text,kg,image=/p/img.npy"`` -> ``[("text", None), ("kg", None), ("image", "/p/img.npy")]``."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str | None]] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        name, _, path = part.partition("=")
        name, path = name.strip(), path.strip() or None
        if not name:
            raise FeatureError(f"modalities {spec!r}: empty name in {part!r} (expected name or name=path)")
        if any(name == n for n, _ in out):
            raise FeatureError(f"modalities {spec!r}: {name!r} is given twice")
        out.append((name, path))
    if not out:
        raise FeatureError(f"modalities {spec!r}: no modality given (e.g. 'text,kg,cf')")
    return out


def load_modalities(split: Split, spec: str | tuple | list, *, cf_method: str = "bpr", dim: int = 64,
                    seed: int = 0, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """``{name: (num_items, d) float32}`` in the order of ``spec``.

    Built-in names: ``text`` (MiniLM), ``kg`` (TF-IDF + SVD, ``dim`` columns) and ``cf`` (item table of
    ``cf_method`` trained on the split's training interactions, ``dim`` columns). ``name=path`` reads a file.
    ``dims`` (name -> expected columns, e.g. the sizes a trained model was built with) is checked for every entry.
    """
    from genir.features import check_dimension, item_features

    out: dict[str, np.ndarray] = {}
    for name, path in parse_modalities(spec):
        if path is not None:
            matrix = load_feature_matrix(path, split.num_items, name=name, item_ids=split.dataset.item_ids)
        elif name == "text":
            matrix = item_features("text", split)
        elif name == "kg":
            matrix = item_features("kg", split, dim=dim)
        elif name == "cf":
            matrix = item_features("cf", split, method=cf_method, dim=dim, seed=seed)
        else:
            raise FeatureError(f"unknown modality {name!r}: built-in ones are text, kg, cf; give a file as "
                               f"{name}=/path/to/features.npy (or .parquet)")
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if dims and name in dims:
            check_dimension(matrix, dims[name], path or f"{name} features")
        out[name] = matrix
    return out
