"""LightGCN (He et al., SIGIR 2020): linear propagation over the normalized user-item graph, BPR loss."""

from genir.methods.lightgcn.model import LightGCN, LightGCNConfig

__all__ = ["LightGCN", "LightGCNConfig"]
