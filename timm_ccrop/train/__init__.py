"""Siamese pretraining with Accelerate: the trainer and its steps.

- :mod:`.setup`: the data with its box table, the method, the optimiser and schedule;
- :mod:`.epoch`: one training epoch and the stop signals;
- :mod:`.monitor`: the per-epoch kNN monitor;
- :mod:`.trainer`: :func:`train`, the epoch loop with box passes and checkpoints.
"""

from .trainer import TrainingStopped, TrainResult, train

__all__ = ["TrainResult", "TrainingStopped", "train"]
