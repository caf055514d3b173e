"""Models shared by the methods: the recommender contract the Trainer and evaluators use, the generative
encoder-decoder that emits semantic IDs, and the pieces methods used to borrow from each other (negative
sampler, BPR loss, normalized adjacency, sequence windows)."""

from genir.models.base import MethodConfig, PropagatedRecommender, Recommender

__all__ = ["MethodConfig", "PropagatedRecommender", "Recommender"]
