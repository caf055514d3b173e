"""BPR-MF (Rendle et al., UAI 2009): matrix factorization trained with the pairwise BPR loss."""

from genir.methods.bpr.model import BPR, BPRConfig

__all__ = ["BPR", "BPRConfig"]
