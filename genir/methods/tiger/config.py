"""Hyper-parameters of TIGER (Rajput et al., NeurIPS 2023, "Recommender Systems with Generative Retrieval")."""

from __future__ import annotations

from dataclasses import dataclass

from genir.models.generative_config import GenerativeConfig


@dataclass
class TigerConfig(GenerativeConfig):
    """TIGER: the generative recommender with its own defaults (codes as encoder input, absolute positions).
    Defaults are CPU-friendly; the paper's values are in :class:`GenerativeConfig`'s comments."""
