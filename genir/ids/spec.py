"""Declarative identifier-scheme specs: the YAML files in ``tokenizers/``.

A spec names the scheme, the item features it reads, the collision policy and the scheme's hyper-parameters::

    scheme: rq_kmeans          # a key of genir.ids.SCHEMES
    features: text             # a key of genir.features.FEATURES, or several: text,kg (concatenated)
    collision: index           # index | popularity | none (genir.ids.collisions)
    description: one line      # optional
    params:                    # fields of the scheme's config dataclass; missing ones take their defaults
      num_levels: 3
      codebook_size: 64

:func:`load_spec` validates everything on load and raises :class:`genir.errors.ConfigError` naming the file and
the field (``tokenizers/rqvae.yaml: params.codebook_size: expected int ... >= 1, got 0``). Overrides (from the
command line) take precedence over the file, which takes precedence over the defaults; string values are parsed
as YAML (``"64"`` -> 64, ``"[256, 128]"`` -> a list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from genir.errors import ConfigError
from genir.ids.base import IdScheme
from genir.ids.collisions import POLICIES
from genir.ids.config import SchemeConfig

TOP_LEVEL = ("scheme", "features", "paired", "collision", "description", "params")


@dataclass(frozen=True)
class SchemeSpec:
    """A validated spec: scheme name, its config, the feature name and the collision policy."""

    scheme: str
    config: SchemeConfig
    features: str = "text"
    collision: str = "index"
    description: str = ""
    source: str = ""  # the file it came from
    paired: str = ""  # features paired with the items for schemes that align with them (fit(paired=...))

    @property
    def params(self) -> dict:
        return self.config.to_dict()

    def to_dict(self) -> dict:
        """The YAML form (complete: every parameter written out)."""
        out = {"scheme": self.scheme, "features": self.features, "collision": self.collision}
        if self.paired:
            out["paired"] = self.paired
        if self.description:
            out["description"] = self.description
        return {**out, "params": self.params}


def load_spec(path: str | Path, overrides: Mapping[str, object] | None = None) -> SchemeSpec:
    """Read and validate a spec file. ``overrides`` keys: a top-level field (``collision``), ``params.<name>``
    or a bare parameter name."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: spec file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; expected a YAML spec (tokenizers/*.yaml)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    return parse_spec(data, str(path), overrides)


def parse_spec(data, source: str = "spec", overrides: Mapping[str, object] | None = None) -> SchemeSpec:
    """Validate a spec already parsed into a dict (see :func:`load_spec`)."""
    from genir.features import FEATURES
    from genir.ids import available_schemes

    SCHEMES = available_schemes()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with fields {list(TOP_LEVEL)}, got {type(data).__name__}")
    params = data.get("params")
    data = {**data, "params": {} if params is None else dict(params) if isinstance(params, dict) else params}
    for key, value in (overrides or {}).items():
        _apply_override(data, str(key), value, source)
    unknown = sorted(set(map(str, data)) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; a spec has {list(TOP_LEVEL)} (hyper-parameters "
                          "go under params:)")
    if "scheme" not in data:
        raise ConfigError(f"{source}: scheme: missing; expected one of {sorted(SCHEMES)}")
    scheme = _choice(data, "scheme", sorted(SCHEMES), source)
    features = _feature_names(data.get("features", "text"), "features", source, FEATURES)
    paired = _feature_names(data["paired"], "paired", source, FEATURES) if data.get("paired") else ""
    collision = _choice(data, "collision", list(POLICIES), source, default="index")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description: expected a string, got {description!r}")
    config = SCHEMES[scheme].config_class.from_dict(data["params"], source=source, prefix="params.")
    return SchemeSpec(scheme, config, features, collision, description.strip(), source, paired)


def _feature_names(value, field: str, source: str, registry) -> str:
    names = [f.strip() for f in value.split(",")] if isinstance(value, str) else [None]
    if not names or any(n not in registry for n in names):
        raise ConfigError(f"{source}: {field}: expected one of {sorted(registry)}, or several joined by "
                          f"commas (text,kg), got {value!r}")
    return ",".join(names)


def build_scheme(spec: SchemeSpec | str | Path) -> IdScheme:
    """An unfitted scheme for a spec (or a spec file)."""
    from genir.ids import available_schemes

    SCHEMES = available_schemes()
    if not isinstance(spec, SchemeSpec):
        spec = load_spec(spec)
    return SCHEMES[spec.scheme](spec.config)


def _choice(data: dict, key: str, allowed: list[str], source: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{source}: {key}: expected one of {allowed}, got {value!r}")
    return value


def _apply_override(data: dict, key: str, value, source: str) -> None:
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{source}: override {key}: cannot parse {value!r}") from None
    if key.startswith("params."):
        key = key[len("params."):]
    elif key in TOP_LEVEL:
        data[key] = value
        return
    if not isinstance(data["params"], dict):
        raise ConfigError(f"{source}: params: expected a mapping, got {data['params']!r}")
    data["params"][key] = value
