"""The one trainer (accelerate) every method trains with."""

from genir.training.trainer import Trainer, TrainerConfig, TrainResult

__all__ = ["TrainResult", "Trainer", "TrainerConfig"]
