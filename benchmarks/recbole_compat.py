"""Run RecBole 1.2.1 on today's stack (numpy 2, scipy >= 1.12, torch >= 2.6, no ``ray``), for benchmarks only.

RecBole 1.2.1 was written against numpy 1.x, scipy < 1.12 and torch < 2.6, and imports ``ray`` at module level.
Rather than pinning an obsolete stack, :func:`install` puts back the few names it relies on, before anything of
RecBole is imported:

* numpy's removed aliases (``np.float``, ``np.int``, ``np.bool``, ``np.long``...), and the ``np.float_`` family
  that RecBole's own ``Config.compatibility_settings`` reads to set those aliases;
* scipy's private ``dok_matrix._update`` (a bulk, unchecked update), called by RecBole's LightGCN;
* ``torch.load`` defaulting to ``weights_only=False`` (RecBole's checkpoints hold its Config object);
* an empty ``ray`` package (``ray.tune`` is imported by ``recbole.quick_start`` but only used for tuning).

:func:`recbole_metrics` feeds a score matrix through RecBole's own metric classes, so genir's metrics can be
checked against the reference implementation. The library (``genir``) never imports this module or RecBole.

Importing this module calls :func:`install`; it is idempotent.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

RECBOLE_METRIC_CLASSES = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR", "hit": "Hit", "precision": "Precision"}

_NUMPY_ALIASES = {
    # the names RecBole's Config.compatibility_settings reads ...
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    # ... and the names RecBole's code uses (also set by that method, but some code runs before any Config)
    "float": np.float64,
    "int": np.int_,
    "bool": np.bool_,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}

_installed = False


def _set_numpy_aliases() -> None:
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


def _patch_scipy_dok_update() -> None:
    """``dok_matrix._update(dict)``: the bulk update without index checks that scipy removed in 1.12."""
    import scipy.sparse as sp

    if hasattr(sp.dok_matrix, "_update"):
        return

    def _update(self, data: dict) -> None:
        self._dict.update(data)

    sp.dok_matrix._update = _update


def _stub_ray() -> None:
    """Put an empty ``ray`` package (with ``ray.tune``) on sys.path when the real one is not installed."""
    if importlib.util.find_spec("ray") is not None:
        return
    package = Path(tempfile.mkdtemp(prefix="recbole_ray_stub_")) / "ray"
    package.mkdir()
    (package / "__init__.py").write_text('"""Empty stand-in for ray: RecBole imports it but only uses it to tune."""\n')
    (package / "tune.py").write_text('"""Empty stand-in for ray.tune."""\n')
    sys.path.append(str(package.parent))


def install() -> None:
    """Make ``import recbole`` and RecBole's BPR / SASRec / LightGCN training work on the current stack."""
    global _installed
    if _installed:
        return
    _set_numpy_aliases()
    _patch_scipy_dok_update()
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    _stub_ray()
    _installed = True


def recbole_dataset_dir() -> Path:
    """The ``dataset_example`` folder inside the installed recbole wheel (holds ``ml-100k/ml-100k.inter``)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise ImportError("recbole is not installed; `pip install --no-deps recbole==1.2.1`")
    return Path(spec.origin).parent / "dataset_example"


def recbole_metrics(
    scores: np.ndarray,
    pos_mask: np.ndarray,
    ks=(5, 10, 20),
    metrics=("recall", "ndcg", "mrr", "hit", "precision"),
    decimal_place: int = 12,
) -> dict[str, float]:
    """Mean top-k metrics computed by RecBole's own metric classes.

    ``scores`` (U, I) are the (already masked) scores of every item for every user and ``pos_mask`` (U, I) marks
    each user's targets. This builds the ``rec.topk`` tensor exactly as ``recbole.evaluator.Collector`` does
    (the positive flags of the top ``max(ks)`` items, then the number of positives as a last column) and calls
    each metric's ``calculate_metric``. RecBole rounds every mean to ``decimal_place`` digits.
    """
    import torch

    install()
    from recbole.evaluator import metrics as recbole_metric_module
    from recbole.evaluator.collector import DataStruct

    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float64))
    pos_matrix = torch.as_tensor(np.asarray(pos_mask, dtype=bool)).to(torch.int)
    _, topk_idx = torch.topk(scores_t, max(ks), dim=-1)
    pos_len = pos_matrix.sum(dim=1, keepdim=True)
    pos_idx = torch.gather(pos_matrix, dim=1, index=topk_idx)
    data = DataStruct()
    data.update_tensor("rec.topk", torch.cat((pos_idx, pos_len), dim=1))

    config = {"topk": list(ks), "metric_decimal_place": decimal_place}
    out: dict[str, float] = {}
    for name in metrics:
        metric = getattr(recbole_metric_module, RECBOLE_METRIC_CLASSES[name])(config)
        out.update({k: float(v) for k, v in metric.calculate_metric(data).items()})
    return out


install()
