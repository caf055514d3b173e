"""Hyper-parameters of AD-DRL (Li et al., ACM MM 2023, arXiv 2312.14433), scaled to MovieLens-100K on CPU."""

from __future__ import annotations

from dataclasses import dataclass

from genir.models.base import MethodConfig


@dataclass
class ADDRLConfig(MethodConfig):
    # inputs
    modalities: str = "text,kg,cf"  # per-item feature matrices (genir.features.modalities spec; name=/path.npy too)
    modality_dims: str = ""  # "name=cols,...": expected columns of each matrix; filled with the built sizes, so a
    #                         reloaded run refuses a user file whose width changed
    use_id: bool = True  # the learned item-ID embedding is one more modality (the paper's ID modality)
    attributes: str = "genre,year,popularity"  # one factor per attribute: genre, year, popularity, rating,
    #                                             kg:<relation> (e.g. kg:film.film.directed_by)
    year_buckets: int = 5  # release-year quantile buckets (the paper's price levels have no analogue here)
    popularity_buckets: int = 5  # training-count quantile buckets (the paper's 5 popularity levels)
    rating_buckets: int = 5  # mean-training-rating quantile buckets (attribute "rating")
    kg_classes: int = 20  # a kg:<relation> attribute keeps its most frequent tail entities; the rest -> "other"
    # representation
    factor_dim: int = 16  # width of one attribute factor; embedding size = factor_dim * number of attributes
    dropout: float = 0.1  # before the factor classifiers
    # training
    score_scale: float = 5.0  # factor term = softplus(score_scale * cos); the paper has 1 (valid NDCG@10 0.062 vs 0.072)
    num_negatives: int = 4  # the loss uses the hardest of these uniform negatives
    temperature: float = 1.0  # of the cross-modal factor InfoNCE
    decay_r: float = 1e-4  # L2 of the batch's ID embeddings and of the projections, / batch size
    decay_f: float = 0.1  # intra-modality factor-identity CE
    decay_n: float = 0.1  # inter-modality factor InfoNCE
    decay_a: float = 0.1  # attribute-value CE on the fused factors
