"""Hyper-parameters of MMGRec (Liu et al., "Multimodal Generative Recommendation", arXiv 2404.16555)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.models.generative_config import GenerativeConfig


@dataclass
class MMGRecConfig(GenerativeConfig):
    """TIGER's generator with MMGRec's switches: the encoder reads one token per history item (its frozen graph
    vector), relation-aware (user-aware) self-attention replaces positional encoding, and the IDs come from the
    Graph RQ-VAE (``genir index build --scheme tokenizers/graph_rqvae.yaml``). Paper values in the comments."""

    d_model: int = 64  # paper: 64
    num_heads: int = 4  # paper: 4
    d_ff: int = 256  # paper: 64
    dropout: float = 0.2  # paper: 0.2
    max_history: int = 32  # paper: 32 (a random sample; here the most recent, see README)
    position: str = "relation"
    encoder_input: str = "features"
    # the graph encoder whose vectors the encoder reads (same settings as tokenizers/graph_rqvae.yaml, so the
    # vectors come from the cache filled by `genir index build`)
    graph_features: str = "text,kg"  # modalities concatenated as item inputs (genir.features.modalities)
    graph_hidden: int = 128
    graph_dim: int = 64
    graph_dropout_hidden: float = 0.5
    graph_dropout_out: float = 0.2
    graph_epochs: int = 60
    graph_lr: float = 1e-3
    graph_patience: int = 10
    graph_seed: int = 42
