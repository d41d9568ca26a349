"""The Accelerate pretraining loop."""

from .loop import TrainingStopped, TrainResult, train

__all__ = ["TrainResult", "TrainingStopped", "train"]
