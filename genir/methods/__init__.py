"""Registry of methods: name -> (config class, model class). Adding a method = one folder + one line here.

Third-party methods register through the ``genir.methods`` entry-point group with a value
``package.module:ModelClass`` (the class carries its ``config_class``); they are looked up by the same names.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from accelerate.utils import set_seed

from genir.data.split import Split
from genir.errors import ConfigError
from genir.methods.addrl import ADDRL, ADDRLConfig
from genir.methods.bpr import BPR, BPRConfig
from genir.methods.lightgcn import LightGCN, LightGCNConfig
from genir.methods.metammf import MetaMMF, MetaMMFConfig
from genir.methods.miggt import MIGGT, MIGGTConfig
from genir.methods.mmgrec import MMGRec, MMGRecConfig
from genir.methods.pop import MostPopular, MostPopularConfig
from genir.methods.sasrec import SASRec, SASRecConfig
from genir.methods.tiger import Tiger, TigerConfig
from genir.models.base import MethodConfig, Recommender

METHODS: dict[str, tuple[type[MethodConfig], type[Recommender]]] = {
    "pop": (MostPopularConfig, MostPopular),
    "addrl": (ADDRLConfig, ADDRL),
    "bpr": (BPRConfig, BPR),
    "lightgcn": (LightGCNConfig, LightGCN),
    "metammf": (MetaMMFConfig, MetaMMF),
    "miggt": (MIGGTConfig, MIGGT),
    "sasrec": (SASRecConfig, SASRec),
    "tiger": (TigerConfig, Tiger),
    "mmgrec": (MMGRecConfig, MMGRec),
}


def get_method(name: str) -> tuple[type[MethodConfig], type[Recommender]]:
    """(config class, model class) of a registered method or of a ``genir.methods`` entry point."""
    if name in METHODS:
        return METHODS[name]
    for ep in entry_points(group="genir.methods"):
        if ep.name == name:
            cls = ep.load()
            return cls.config_class, cls
    raise ConfigError(f"unknown method {name!r}; registered: {sorted(METHODS)}")


def split_overrides(name: str, overrides: dict) -> tuple[dict, dict]:
    """Separate ``key=value`` overrides into (method config fields, everything else)."""
    config_cls, _ = get_method(name)
    fields = set(config_cls.__dataclass_fields__)
    return ({k: v for k, v in overrides.items() if k in fields}, {k: v for k, v in overrides.items() if k not in fields})


def build_method(name: str, split: Split, config: dict | MethodConfig | None = None,
                 seed: int | None = None) -> Recommender:
    """Instantiate a registered method for a split, with its config from a dict (validated) or dataclass.

    ``seed`` seeds every RNG before the weights are initialized, so a run is reproducible from its seed."""
    config_cls, model_cls = get_method(name)
    if seed is not None:
        set_seed(seed)
    if not isinstance(config, MethodConfig):
        config = config_cls.from_dict(config or {}, source=f"method {name}")
    return model_cls(config, split)


__all__ = ["METHODS", "MethodConfig", "Recommender", "build_method", "get_method", "split_overrides"]
