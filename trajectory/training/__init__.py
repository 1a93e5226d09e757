"""Training: `train` with `TrainConfig`, checkpoints that rebuild themselves, `evaluate`."""

from trajectory.training.checkpoint import load_checkpoint, save_checkpoint
from trajectory.training.evaluate import evaluate
from trajectory.training.train import TrainConfig, TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "load_checkpoint",
    "save_checkpoint",
    "train",
]
