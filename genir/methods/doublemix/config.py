"""Hyper-parameters of Double Mixture (Kang, Wu et al., arXiv 2404.13289) and of the baselines run beside it.

Every method shares the frozen Whisper, the one appended decoder layer and the trainable ``<event>`` embedding;
:data:`VARIANTS` says what each one changes (the FFN of the appended layer, the memory, EWC, prompts)."""

from __future__ import annotations

from dataclasses import dataclass

from genir.config import Config, param

# name -> (appended layer's FFN, memory, hybrid memory, EWC, prompts, joint, rehearsal-based)
#   ffn: "moe" = mixture of bottleneck-adapter experts with a top-1 router; "adapter" = one bottleneck adapter
#   (the router ablation); "dense" = the copied dense FFN; "frozen" = the appended layer does not train (L2P).
VARIANTS: dict[str, dict] = {
    "doublemix": {"ffn": "moe", "memory": True, "hybrid": True, "ewc": False, "prompts": False, "joint": False},
    "adapter": {"ffn": "adapter", "memory": True, "hybrid": True, "ewc": False, "prompts": False, "joint": False},
    "finetune": {"ffn": "dense", "memory": False, "hybrid": False, "ewc": False, "prompts": False, "joint": False},
    "ewc": {"ffn": "dense", "memory": False, "hybrid": False, "ewc": True, "prompts": False, "joint": False},
    "replay": {"ffn": "dense", "memory": True, "hybrid": False, "ewc": False, "prompts": False, "joint": False},
    "l2p": {"ffn": "frozen", "memory": False, "hybrid": False, "ewc": False, "prompts": True, "joint": False},
    "joint": {"ffn": "dense", "memory": False, "hybrid": True, "ewc": False, "prompts": False, "joint": True},
}
LABELS = {"doublemix": "Double Mixture (MoE adapters + mixed memory)", "adapter": "adapter, no router (+ memory)",
          "finetune": "sequential fine-tuning", "ewc": "EWC", "replay": "replay only (10%)",
          "l2p": "L2P prompts", "joint": "joint training (upper bound)"}


def rehearsal_based(variant: str) -> bool:
    """Whether a method keeps old training samples (replay / hybrid memory / all data at once)."""
    v = VARIANTS[variant]
    return bool(v["memory"] or v["joint"])


@dataclass
class DoubleMixConfig(Config):
    variant: str = param("doublemix", "the method: " + ", ".join(VARIANTS), choices=tuple(VARIANTS))
    adapter_dim: int = param(32, "bottleneck width of each adapter expert (paper: 32)", min=1)
    n_experts: int = param(0, "adapter experts, allocated up front; 0 = one per task of the stream", min=0)
    balance_loss: float = param(0.0, "weight of the Switch-style load-balance loss of the router (paper's yaml: 0)",
                                min=0.0)
    adapter_lr_scale: float = param(4.0, "learning-rate factor of the adapter experts and the router (new, "
                                    "randomly initialised, d -> 32 -> d) over the trainer's lr; 1 = the paper's single "
                                    "lr, which left them under-trained at this run's few steps per task", min=0.0)
    train_attention: bool = param(True, "train the appended layer's self- and cross-attention (the paper trains "
                                  "the whole new layer); false: only its FFN / experts train")
    replay_ratio: float = param(0.1, "memory: samples from each earlier task = replay_ratio x |D_i| (paper: 0.1)",
                                min=0.0)
    hybrid_replay_ratio: float = param(1.0, "hybrid memory: mixed (join/overlay) samples per hybrid pair whose two "
                                       "tasks have been seen = hybrid_replay_ratio x replay_ratio x |D_i|", min=0.0)
    ewc_lambda: float = param(1e5, "EWC penalty weight (lambda / 2 * sum F (theta - theta*)^2); at 1e3 the penalty "
                              "was 1-5% of the loss on a 3-task run and EWC matched fine-tuning", min=0.0)
    ewc_batches: int = param(8, "batches of the finished task used to estimate the diagonal Fisher", min=1)
    pool_size: int = param(10, "L2P: prompts in the pool (L2P's default)", min=1)
    prompt_length: int = param(5, "L2P: vectors per prompt", min=1)
    prompt_top_k: int = param(5, "L2P: prompts chosen per clip (keys nearest to the mean encoder state)", min=1)
    prompt_lr_scale: float = param(10.0, "L2P: learning-rate factor of the prompts and keys over the trainer's lr "
                                   "(at 1x they learned nothing in a 3-task run: accuracy 0)", min=0.0)
    pull_weight: float = param(0.1, "L2P: weight of the key pull loss (1 - cos)", min=0.0)
    max_new_tokens: int = param(60, "greedy decoding limit", min=1)
