"""AD-DRL (Li et al., ACM MM 2023): attribute-driven disentangled multimodal representations, fused per factor;
per-factor score shares explain a recommendation and per-factor weights steer it (:mod:`.explain`)."""

from genir.methods.addrl.config import ADDRLConfig
from genir.methods.addrl.model import ADDRL

__all__ = ["ADDRL", "ADDRLConfig"]
