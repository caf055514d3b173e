"""Multi-round regularization for text-guided image editing (Zeng et al., arXiv 2401.08472): a small conditional
U-Net editor trained with L_single + L_recon + lambda(t) L_multi; see README.md in this folder."""

from genir.methods.multiround.config import MultiRoundConfig
from genir.methods.multiround.model import ConditionalUNet, MultiRoundEditor
from genir.methods.multiround.procedures import (
    edit_metrics,
    identity_outputs,
    instruction_embeddings,
    retrieval_metrics,
    run_examples,
    train_editor,
)

__all__ = ["ConditionalUNet", "MultiRoundConfig", "MultiRoundEditor", "edit_metrics", "identity_outputs",
           "instruction_embeddings", "retrieval_metrics", "run_examples", "train_editor"]
