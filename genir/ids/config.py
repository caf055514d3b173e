"""Config base of identifier schemes (:class:`SchemeConfig`, on :class:`genir.config.Config`) and helpers for
per-level settings."""

from __future__ import annotations

from dataclasses import dataclass

from genir.config import Config, config_error, describe, param

__all__ = ["SchemeConfig", "check_level_list", "config_error", "describe", "level_sizes_of", "param"]


@dataclass
class SchemeConfig(Config):
    """Base of every scheme's config. Subclasses add fields with :func:`param` and may override :meth:`check`
    for rules between fields."""


def level_sizes_of(codebook_size: int | list[int], num_levels: int) -> list[int]:
    """Per-level codebook sizes from one size for all levels or a list with one size per level."""
    return list(codebook_size) if isinstance(codebook_size, list) else [int(codebook_size)] * num_levels


def check_level_list(cfg, source: str, prefix: str, name: str = "codebook_size") -> None:
    """A list-valued ``name`` must have one entry per level (``cfg.num_levels``)."""
    value = getattr(cfg, name)
    if isinstance(value, list) and len(value) != cfg.num_levels:
        raise config_error(source, prefix, name, f"one size per level ({cfg.num_levels} = num_levels) or a "
                           "single int", value)
