"""The one trainer (accelerate) every method trains with."""

from genir.training.trainer import Callback, Trainer, TrainerConfig, TrainResult, bf16_is_native

__all__ = ["Callback", "TrainResult", "Trainer", "TrainerConfig", "bf16_is_native"]
