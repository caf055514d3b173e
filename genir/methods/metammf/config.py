"""Hyper-parameters of MetaMMF: the paper's symbols, scaled down to MovieLens-100K on CPU (see the README)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.errors import ConfigError
from genir.models.base import MethodConfig

FUSIONS = ("full", "cp", "static")
BACKBONES = ("mf", "gcn")


@dataclass
class MetaMMFConfig(MethodConfig):
    modalities: str = "text,kg,cf"  # load_modalities spec: built-in text/kg/cf or name=/path.npy|.parquet
    modality_dims: str = ""  # expected widths "name=d,..." (checked; filled in from the data when empty)
    fusion: str = "cp"  # "full": per-item generated weights (paper); "cp": CP-factorized (light); "static": MLP
    cp_rank: int = 8  # R of the CP decomposition (paper: 16)
    meta_dim: int = 8  # s_dim, width of the meta vector s_i (paper: 5)
    meta_hidden: int = 128  # hidden width of the meta-information extractor (paper: = input width)
    pca_dim: int = 32  # per-modality PCA width of the fusion input; 0 = raw features (paper: raw, 2276-d)
    fusion_dims: tuple = (64, 32)  # output widths of the fusion layers (paper: 1024, 512, 256, 32)
    id_dim: int = 32  # free item-ID embedding concatenated with the fused vector (paper: 32)
    num_negatives: int = 1  # negatives per positive, resampled every step (paper: 5, sampled once)
    backbone: str = "gcn"  # "gcn": graph propagation (MetaMMF_GCN, LightGCN-style); "mf": user . item (MetaMMF_MF)
    n_layers: int = 2  # propagation layers of the gcn backbone
    dropout: float = 0.3  # dropout on the fusion input (not in the paper; chosen on validation)
    init_std: float = 0.1  # normal init of the user and item-ID embeddings

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ConfigError(f"metammf: fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"metammf: backbone must be one of {BACKBONES}, got {self.backbone!r}")
        self.fusion_dims = tuple(int(d) for d in self.fusion_dims)
        for name in ("cp_rank", "meta_dim", "meta_hidden", "id_dim", "num_negatives"):
            if getattr(self, name) < 1:
                raise ConfigError(f"metammf: {name} must be >= 1, got {getattr(self, name)}")
        if not self.fusion_dims or min(self.fusion_dims) < 1:
            raise ConfigError(f"metammf: fusion_dims must be positive widths, got {self.fusion_dims}")
        if self.pca_dim < 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"metammf: pca_dim must be >= 0 and dropout in [0, 1), got {self.pca_dim}, "
                              f"{self.dropout}")
        parse_dims(self.modality_dims)


def parse_dims(spec: str) -> dict[str, int]:
    """``"text=384,img=128"`` -> ``{"text": 384, "img": 128}``."""
    out = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, dim = part.partition("=")
        if not dim.strip().isdigit():
            raise ConfigError(f"metammf: modality_dims entry {part!r} must look like name=width")
        out[name.strip()] = int(dim)
    return out
