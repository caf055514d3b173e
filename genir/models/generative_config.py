"""Hyper-parameters of the generative recommender (TIGER, Rajput et al., NeurIPS 2023; MMGRec switches)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.models.base import MethodConfig


@dataclass
class GenerativeConfig(MethodConfig):
    """A transformer encoder-decoder, trained from scratch, that reads the semantic IDs of a user's recent items and
    generates the semantic ID of the next one under a prefix-index constraint.

    Defaults are CPU-friendly; the paper's values are in the comments (see README.md for all deviations).
    """

    index: str = ""  # index dir built by `genir index build` (required): semantic IDs + prefix index
    d_model: int = 64  # paper: 128 (64 trains ~2x faster on CPU, see README)
    num_heads: int = 2  # paper: 6 heads of 64
    d_ff: int = 256  # paper: 1024
    num_encoder_layers: int = 2  # paper: 4
    num_decoder_layers: int = 2  # paper: 4
    dropout: float = 0.1  # paper: 0.1
    max_history: int = 20  # items read by the encoder (paper: 20)
    beam_width: int = 20  # beams of the constrained decoding, also the number of items returned (paper: 20)
    position: str = "absolute"  # absolute | relation (MMGRec's user-aware attention) | none
    encoder_input: str = "codes"  # codes (L tokens per item) | items (sum of an item's code embeddings) | features
