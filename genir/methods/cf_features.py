"""Collaborative-filtering item embeddings: the item table of a BPR or LightGCN model trained on a split.

The method is trained with genir's one :class:`~genir.training.Trainer` (early stopping on the validation
metric, best epoch restored), so these are exactly the embeddings of the reported baseline of the same settings.
Rows are returned as the model scores with them (dot product), not normalized: their norms carry popularity.
LightGCN's are the propagated (layer-mean) embeddings.

The seed is given to ``build_method`` (weight initialization) and to the Trainer (shuffling, negatives), so the
result is reproducible for a seed on a given device (CPU and GPU runs differ in float rounding and are cached
under the same key). Only the training interactions of the split are used; pass the split you evaluate on, or
the features leak the held-out interactions.
"""

from __future__ import annotations

import numpy as np

from genir.data.split import Split
from genir.errors import ConfigError, FeatureError
from genir.features import Feature
from genir.features.cache import cached
from genir.methods import build_method, get_method
from genir.training import Trainer, TrainerConfig

# trainer fields that do not change the trained weights, left out of the cache key
_NO_EFFECT = ("progress", "output_dir", "resume", "num_workers", "eval_batch_size", "cpu")


def cf_embeddings(
    split: Split,
    method: str = "bpr",
    dim: int = 64,
    seed: int = 0,
    epochs: int | None = None,
    cache: bool = True,
    trainer_overrides: dict | None = None,
    method_overrides: dict | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(num_items, dim) float32 item embeddings of ``method`` trained on ``split``.

    ``epochs`` None: the method's default budget (early stopping usually ends sooner). ``trainer_overrides`` /
    ``method_overrides`` set other TrainerConfig / method-config fields (e.g. ``{"patience": 3}``); all of them
    are part of the cache key.
    """
    if not isinstance(split, Split):
        raise FeatureError(f"cf features are trained on a split's training interactions; got "
                           f"{type(split).__name__}, pass e.g. leave_one_out(dataset)")
    try:
        config_cls, model_cls = get_method(method)
    except ConfigError as exc:
        raise FeatureError(f"cf features: {exc}") from None
    if not callable(getattr(model_cls, "item_embeddings", None)):
        raise FeatureError(f"cf features: method {method!r} has no item embeddings; use 'bpr' or 'lightgcn'")
    try:
        method_cfg = config_cls.from_dict({"embedding_size": dim, **(method_overrides or {})},
                                          source=f"cf features: method {method}")
        trainer_cfg = TrainerConfig.for_method(
            model_cls, {"seed": seed, **({"epochs": epochs} if epochs is not None else {}),
                        **(trainer_overrides or {}), "progress": progress},
            source="cf features: trainer",
        )
    except ConfigError as exc:
        raise FeatureError(str(exc)) from None

    trainer_key = {k: v for k, v in vars(trainer_cfg).items() if k not in _NO_EFFECT}
    params = {"method": method, "method_config": method_cfg.to_dict(), "trainer": trainer_key,
              "protocol": split.protocol, "split_sha256": split.fingerprint()}

    def compute() -> np.ndarray:
        model = build_method(method, split, method_cfg, seed=trainer_cfg.seed)  # seeds the initialization too
        Trainer(model, split, config=trainer_cfg).fit()
        emb = model.item_embeddings().detach().float().cpu().numpy()  # (num_items, dim)
        return np.ascontiguousarray(emb, dtype=np.float32)

    if not cache:
        return compute()
    return cached("cf", params, split.dataset.fingerprint(), compute)


CF_FEATURE = Feature(cf_embeddings, needs_split=True)  # the ``cf`` entry of genir.features.FEATURES
