"""Hyper-parameters of MIG-GT (Hu, Hooi, He, Wei; AAAI 2025, "Modality-Independent Graph Neural Networks with
Global Transformers for Multimodal Recommendation")."""

from __future__ import annotations

from dataclasses import dataclass

from genir.models.base import MethodConfig


@dataclass
class MIGGTConfig(MethodConfig):
    """MIG-GT: one MGDCF propagation per modality, each with its own receptive field K (MIRF), summed, then a
    sampling-based global transformer (SGT) over C uniformly sampled items per node; BPR + TUR + L2 loss.

    Paper values (its Amazon-Baby config) in the comments; the defaults were tuned on ml-100k validation
    (README.md has the sweep and every deviation).
    """

    modalities: str = "text,kg,cf"  # load_modalities spec: built-ins text, kg, cf and name=/path.npy|.parquet
    feature_dims: str = ""  # expected widths of the modalities, "image=128,text=384": a mismatch is a FeatureError
    # K per branch ("id" = the ID-embedding branch; K < 0 turns a branch off); the default is what the K search of
    # recipes/miggt.py chose on ml-100k validation (paper, Baby: K_id=4, K_text=2, K_image=1)
    hops: str = "id=1,text=0,kg=-1,cf=0"
    default_hops: int = 2  # K of a branch that `hops` does not name
    item_embedding: bool = True  # items hold learned ID embeddings in the ID branch (paper: zeros, use_item_emb=False)
    embedding_size: int = 64  # paper: 64
    hidden_size: int = 128  # hidden width of each modality's MLP encoder (paper: 512)
    alpha: float = 0.1  # MGDCF restart weight (paper: 0.1)
    beta: float = 0.9  # MGDCF propagation weight (paper: 0.9)
    self_loops: bool = True  # add self-loops to the normalized adjacency, as the paper's graph does
    input_dropout: float = 0.3  # on the raw item features (paper: 0.3)
    feat_dropout: float = 0.3  # after each encoder layer (paper: 0.3)
    user_dropout: float = 0.1  # on the user and item ID embeddings entering the ID branch (paper user_x: 0.3)
    item_dropout: float = 0.2  # on the encoded item features entering their branches (paper item_x: 0.3)
    edge_dropout: float = 0.2  # on the normalized edge weights during training (paper: 0.2)
    z_dropout: float = 0.1  # on the sum of the branch outputs (paper: 0.2)
    use_transformer: bool = True  # the sampling-based global transformer (False: the "w/o SGT" ablation)
    num_samples: int = 10  # C, global items sampled uniformly per node (paper: 10)
    attention_size: int = 4  # width of the SGT's query/key maps (paper: 4)
    transformer_weight: float = 0.1  # output = w * attention + (1 - w) * input (paper: 0.1)
    tur_weight: float = 1.0  # weight of the transformer unsmooth regularization (paper: 1)
    l2_coef: float = 1e-5  # 1/2 * l2_coef * ||final user and item tables||^2 per step (paper: 1e-5 on Baby)
    cf_method: str = "bpr"  # model behind the built-in cf modality
    feature_seed: int = 0  # seed of the cf feature training (cached)
