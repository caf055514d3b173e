"""MetaMMF (Liu et al., ACM TOIS): a meta learner generates each item's multimodal fusion network; CP-light variant."""

from genir.methods.metammf.config import MetaMMFConfig
from genir.methods.metammf.model import MetaMMF

__all__ = ["MetaMMF", "MetaMMFConfig"]
