"""The one trainer (accelerate) every method trains with."""

from genir.training.trainer import Trainer, TrainerConfig, TrainResult, bf16_is_native

__all__ = ["TrainResult", "Trainer", "TrainerConfig", "bf16_is_native"]
