"""The one config mechanism: hyper-parameter dataclasses checked field by field, for identifier schemes, methods
and the trainer alike.

A config is a :class:`Config` dataclass; its fields may be made with :func:`param` (the default, a one-line doc
and the allowed range or choices) or be plain typed fields with a default. The same declaration drives

* validation of a YAML spec or settings file: unknown field, wrong type, out-of-range value, each reported as
  ``<file>: <prefix><field>: expected ..., got ...`` (:class:`genir.errors.ConfigError`);
* command-line ``key=value`` strings, converted to the field's type (``from_dict(..., coerce=True)``);
* validation of a config built in Python (``RQVAE(codebook_size=0)`` fails the same way);
* the documentation: ``describe(RQVAEConfig)`` lists fields, defaults and docs.

Supported field types: ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``list[int]`` and unions of
these (``int | list[int]``); ``bool`` is never accepted for ``int``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields

from genir.errors import ConfigError

_MISSING = dataclasses.MISSING


def param(default, doc: str, *, min=None, max=None, choices=None):
    """A config field: ``default`` (lists are copied per instance), ``doc``, inclusive ``min``/``max`` bounds
    (applied to each element of a list) and allowed ``choices``."""
    meta = {"doc": doc, "min": min, "max": max, "choices": tuple(choices) if choices is not None else None}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Base of every config (schemes, methods, the trainer). Subclasses add fields (with :func:`param` for a doc
    and a range) and may override :meth:`check` for rules between fields."""

    @classmethod
    def from_dict(cls, values: dict, source: str = "config", prefix: str = "", *, coerce: bool = False) -> Config:
        """A validated config from ``values`` (missing fields take their defaults). ``source`` (a file name) and
        ``prefix`` (``"params."``) only shape the error messages. ``coerce``: convert strings (``key=value`` on a
        command line) and other near misses to the type of the field's default first."""
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: expected a mapping of field: value, "
                              f"got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {[prefix + str(u) for u in unknown]} for "
                              f"{cls.__name__}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        if coerce:
            values = {k: coerce_value(v, _default_type(cls.__dataclass_fields__[k]), f"{source}: {prefix}{k}")
                      for k, v in values.items()}
        for name, value in values.items():
            _check_value(value, hints[name], cls.__dataclass_fields__[name].metadata, f"{source}: {prefix}{name}")
        cfg = cls(**{k: list(v) if isinstance(v, list) else v for k, v in values.items()})
        cfg.check(source, prefix)
        return cfg

    def validate(self, source: str = "config", prefix: str = "") -> Config:
        """Check every field of an existing config (built in Python); returns self."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_value(getattr(self, f.name), hints[f.name], f.metadata, f"{source}: {prefix}{f.name}")
        self.check(source, prefix)
        return self

    def check(self, source: str, prefix: str) -> None:
        """Rules between fields; raise :func:`config_error` naming the field."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_error(source: str, prefix: str, name: str, expected: str, value) -> ConfigError:
    """The standard message: ``<source>: <prefix><name>: expected <expected>, got <value!r>``."""
    return ConfigError(f"{source}: {prefix}{name}: expected {expected}, got {value!r}")


def describe(cls: type[Config]) -> str:
    """One line per field: ``name: type = default  # doc [range]``."""
    hints = typing.get_type_hints(cls)
    lines = []
    for f in fields(cls):
        default = f.default if f.default is not _MISSING else f.default_factory()
        rng = _range_text(f.metadata).strip()
        lines.append(f"{f.name}: {_type_name(hints[f.name])} = {default!r}  # {f.metadata.get('doc', '')}"
                     + (f" ({rng})" if rng else ""))
    return "\n".join(lines)


def coerce_value(value, typ, where: str):
    """Convert a command-line string (or YAML value) to ``typ``, the type of the field's default."""
    if typ is None or isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if typ in (tuple, list) and isinstance(value, str):
            return typ(int(x) if x.strip().lstrip("-").isdigit() else x.strip() for x in value.split(","))
        if typ is float and isinstance(value, bool):
            raise ValueError(value)
        return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None


def _default_type(f) -> type | None:
    default = f.default if f.default is not _MISSING else (
        f.default_factory() if f.default_factory is not _MISSING else None)
    return type(default) if default is not None else None


# ---------------------------------------------------------------------------------------------------------------
def _check_value(value, hint, meta, where: str) -> None:
    if not _type_ok(value, hint):
        raise ConfigError(f"{where}: expected {_type_name(hint)}{_range_text(meta)}, got {value!r}")
    items = value if isinstance(value, list) else [value]
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    for v in items:
        if choices is not None and v not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        if numeric and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise ConfigError(f"{where}: expected {_type_name(hint)}{_range_text(meta)}, got {value!r}")


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and len(value) > 0 and all(_type_ok(v, inner) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if origin is list:
        (inner,) = typing.get_args(hint)
        return f"a non-empty list of {_type_name(inner)}"
    return getattr(hint, "__name__", str(hint))


def _range_text(meta) -> str:
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None:
        return f" in {list(choices)}"
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""
