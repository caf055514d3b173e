"""The identifier-scheme interface: (N x d) float features in, (N x L) int codes out.

A scheme is a small object (lucidrains-style): ``fit(features) -> self``, ``encode(features) -> (N, L_sem)
int64``, ``level_sizes`` (K_l per level) and ``state_dict`` / ``save`` / ``load``. ``encode`` gives the
*semantic* levels only; making IDs unique (an extra level) is :mod:`genir.ids.collisions`' job and the item <->
code mapping is :class:`genir.ids.table.SemanticIdTable`'s.

A saved scheme is a folder with ``scheme.json`` (format version, scheme name, config, fitted metadata, array
names) and ``state.safetensors`` (the fitted arrays: codebooks, network weights); both are written atomically,
the JSON last, so a folder with a readable ``scheme.json`` is complete.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import safetensors
import safetensors.numpy
import torch

from genir.atomic import atomic_write, write_json
from genir.errors import FeatureError, SemanticIdError
from genir.ids.config import SchemeConfig

FORMAT_VERSION = 1
SCHEME_FILE = "scheme.json"
STATE_FILE = "state.safetensors"


class IdScheme(ABC):
    """Base class of identifier schemes. Subclasses set ``name`` and ``config_class`` and implement
    :meth:`fit`, :meth:`encode`, :attr:`level_sizes`, :meth:`_get_state` and :meth:`_set_state`.

    ``IdScheme(config)`` or ``IdScheme(**fields)``; the config is validated on construction.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[SchemeConfig]] = SchemeConfig

    #: What ``fit`` needs besides the features, by keyword; ``genir index build`` supplies exactly these
    #: (and refuses a catalogue that cannot): ``split`` - a :class:`genir.data.Split` whose training
    #: interactions the scheme reads (a graph); ``paired`` - (N, d') features paired with the items that the
    #: codes should align with (caption embeddings of images); ``progress`` - show a progress bar.
    FIT_CONTEXT: ClassVar[tuple[str, ...]] = ()

    @property
    def fit_context(self) -> tuple[str, ...]:
        """The keywords :meth:`fit` takes beyond the features (:data:`FIT_CONTEXT`; may depend on the config)."""
        return self.FIT_CONTEXT

    def __init__(self, config: SchemeConfig | None = None, **overrides):
        if config is not None and not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        values = {**(config.to_dict() if config is not None else {}), **overrides}
        self.config = self.config_class.from_dict(values, source=self.name or type(self).__name__)
        self.num_features: int | None = None  # d seen by fit; None until fitted

    # -- the interface ------------------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, features: np.ndarray | torch.Tensor, **kw) -> IdScheme:
        """Learn the codebooks from (N, d) features; returns self."""

    @abstractmethod
    def encode(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, L_sem) int64 semantic codes, code ``c`` at level ``l`` in ``[0, level_sizes[l])``. Deterministic."""

    @property
    @abstractmethod
    def level_sizes(self) -> list[int]:
        """K_l, the number of codes of each semantic level."""

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def fitted(self) -> bool:
        return self.num_features is not None

    def fit_encode(self, features: np.ndarray | torch.Tensor, **kw) -> np.ndarray:
        """``fit(features, **kw).encode(features)``."""
        return self.fit(features, **kw).encode(features)

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"scheme", "config", "meta" (JSON values), "arrays" (name -> np.ndarray)}`` of a fitted scheme."""
        self._require_fitted()
        meta, arrays = self._get_state()
        return {"scheme": self.name, "config": self.config.to_dict(),
                "meta": {"num_features": self.num_features, **meta},
                "arrays": {k: np.ascontiguousarray(v) for k, v in arrays.items()}}

    def load_state_dict(self, state: dict, source: str = "state_dict") -> IdScheme:
        """Restore a state from :meth:`state_dict` (config included); returns self."""
        if state.get("scheme") != self.name:
            raise SemanticIdError(f"{source}: holds a {state.get('scheme')!r} scheme, not {self.name!r}")
        meta = state.get("meta")
        if not isinstance(meta, dict) or not isinstance(meta.get("num_features"), int):
            raise SemanticIdError(f"{source}: field 'meta' must be a mapping with an int 'num_features'")
        self.config = self.config_class.from_dict(state.get("config", {}), source=source, prefix="config.")
        meta = dict(meta)
        self.num_features = int(meta.pop("num_features"))
        self._set_state(meta, state["arrays"])
        return self

    @abstractmethod
    def _get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able metadata, named arrays) that fully describe the fitted scheme."""

    @abstractmethod
    def _set_state(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`_get_state`."""

    def save(self, directory: str | Path) -> Path:
        """Write ``scheme.json`` + ``state.safetensors`` into ``directory`` (created if needed)."""
        state = self.state_dict()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = state.pop("arrays")
        blob = safetensors.numpy.save(arrays) if arrays else b""
        atomic_write(directory / STATE_FILE, lambda fh: fh.write(blob))
        write_json(directory / SCHEME_FILE, {"format_version": FORMAT_VERSION, **state,
                                             "arrays": {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}})
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> IdScheme:
        """A fitted scheme from :meth:`save`'s folder. On :class:`IdScheme` itself the class is looked up in
        :data:`genir.ids.SCHEMES` by the saved name; on a subclass the name must match."""
        directory = Path(directory)
        path = directory / SCHEME_FILE
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            raise SemanticIdError(f"{path}: not found; is {directory} a saved identifier scheme?") from None
        except (OSError, ValueError) as exc:
            raise SemanticIdError(f"{path}: unreadable ({exc})") from None
        version = info.get("format_version") if isinstance(info, dict) else None
        if version != FORMAT_VERSION:
            raise SemanticIdError(f"{path}: format_version {version!r} is not {FORMAT_VERSION}")
        if cls is IdScheme:
            from genir.ids import available_schemes

            SCHEMES = available_schemes()
            if info.get("scheme") not in SCHEMES:
                raise SemanticIdError(f"{path}: unknown scheme {info.get('scheme')!r}; known: {sorted(SCHEMES)}")
            return SCHEMES[info["scheme"]].load(directory)
        if info.get("scheme") != cls.name:
            raise SemanticIdError(f"{path}: holds a {info.get('scheme')!r} scheme, not {cls.name!r}")
        expected = info.get("arrays", {})
        try:
            arrays = safetensors.numpy.load_file(directory / STATE_FILE) if expected else {}
        except (OSError, safetensors.SafetensorError) as exc:
            raise SemanticIdError(f"{directory / STATE_FILE}: unreadable ({exc})") from None
        got = {k: [list(v.shape), str(v.dtype)] for k, v in arrays.items()}
        if got != expected:
            raise SemanticIdError(f"{directory / STATE_FILE}: arrays {got} do not match {path} ({expected})")
        if not isinstance(info.get("config"), dict):
            raise SemanticIdError(f"{path}: field 'config' missing or not a mapping")
        scheme = cls(cls.config_class.from_dict(info["config"], source=str(path), prefix="config."))
        return scheme.load_state_dict({**info, "arrays": arrays}, source=str(path))

    # -- helpers for subclasses ---------------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(features) or load(directory) first")

    def _check_features(self, features, what: str = "features") -> np.ndarray:
        """(N, d) float32 C-contiguous ``features`` (not always a copy); when fitted, d must be the fitted one."""
        x = as_features(features, f"{self.name}: {what}")
        if self.num_features is not None and x.shape[1] != self.num_features:
            raise FeatureError(f"{self.name}: {what} have {x.shape[1]} columns; the scheme was fitted on "
                               f"{self.num_features}")
        return x


def as_features(features, where: str = "features") -> np.ndarray:
    """Validate an (N, d) numeric matrix (numpy or torch) and return it as float32; FeatureError otherwise."""
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features)
    if x.ndim != 2:
        raise FeatureError(f"{where}: expected a 2-D (items x features) matrix, got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise FeatureError(f"{where}: empty matrix of shape {x.shape}")
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise FeatureError(f"{where}: expected float or integer values, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise FeatureError(f"{where}: {int(bad.sum())} NaN or infinite values (first in row "
                           f"{int(np.argwhere(bad)[0, 0])})")
    return x


def as_codes(codes, where: str = "codes") -> np.ndarray:
    """Validate an (N, L) matrix of non-negative integer codes (numpy, torch or nested lists); int64 copy."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    c = np.asarray(codes)
    if c.ndim != 2 or c.shape[1] == 0:
        raise SemanticIdError(f"{where}: expected a 2-D (items x levels) code matrix, got shape {c.shape}")
    if c.size and (c.dtype == bool or not np.issubdtype(c.dtype, np.integer)):
        raise SemanticIdError(f"{where}: expected integer codes, got dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.size and c.min() < 0:
        raise SemanticIdError(f"{where}: negative code {int(c.min())} in row {int(np.argwhere(c < 0)[0, 0])}")
    return c
