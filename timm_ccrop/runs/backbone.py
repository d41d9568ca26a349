"""A run's backbone: its weights and the model its config names, read one way for
``timm-ccrop export`` and ``timm-ccrop eval`` alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..config import TrainConfig
from ..models.backbones import (
    WEIGHTS_NAME,
    backbone_state_from_checkpoint,
    create_backbone,
    load_backbone_weights,
    read_state_dict,
)
from .checkpoints import read_checkpoint
from .folder import RunFolder

__all__ = ["RunWeights", "build_run_backbone", "read_run_weights"]


@dataclass
class RunWeights:
    """A run's backbone weights and what they were trained with.

    ``source`` is the checkpoint or the exported weights file they were read from;
    ``epoch`` the checkpoint's epoch (None for an export); ``partial`` whether that
    checkpoint was written by a stopped run mid-epoch.
    """

    folder: Path
    config: TrainConfig
    config_text: str
    state: dict[str, torch.Tensor]
    source: Path
    epoch: int | None
    partial: bool


def _run_config(run: RunFolder, checkpoint: dict[str, Any] | None) -> tuple[TrainConfig, str]:
    """The config the weights were trained with (the checkpoint's own copy, else the
    folder's config.yaml) and the YAML text to publish with them."""
    text = run.config_path.read_text() if run.config_path.is_file() else None
    values = None
    if checkpoint is not None and isinstance(checkpoint.get("config"), dict):
        values = checkpoint["config"]
    elif text is not None:
        values = yaml.safe_load(text) or {}
    if values is None:
        raise ValueError(f"{run.path} has neither config.yaml nor a checkpoint with its "
                         "config; cannot tell which architecture was trained")
    config = TrainConfig.from_dict(values)
    return config, text if text is not None else yaml.safe_dump(config.to_dict(),
                                                                 sort_keys=False)


def read_run_weights(path: str | Path, checkpoint: str | Path | None = None,
                     verify: bool = True) -> RunWeights:
    """The backbone weights of a run: ``checkpoint`` when given (or ``path`` is a
    checkpoint file), else the run folder's newest readable checkpoint, else its
    ``backbone/`` export; with ``verify`` they are checked against their recorded sha256.

    Raises FileNotFoundError when the run has no weights, ValueError (one line) when they
    or the config cannot be read.
    """
    path = Path(path).expanduser()
    if path.is_file():
        checkpoint, path = path, path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} does not exist")
    run = RunFolder(path)
    if checkpoint is not None or run.checkpoints():
        state, used = read_checkpoint(Path(checkpoint) if checkpoint is not None else path,
                                      verify=verify)
        config, text = _run_config(run, state)
        epoch = state.get("epoch")
        return RunWeights(path, config, text,
                          backbone_state_from_checkpoint(state, f"checkpoint {used}"), used,
                          int(epoch) if epoch is not None else None,
                          bool(state.get("partial", False)))
    exported = run.backbone_dir / WEIGHTS_NAME
    if exported.is_file():
        config, text = _run_config(run, None)
        return RunWeights(path, config, text, read_state_dict(exported, verify), exported,
                          None, False)
    raise FileNotFoundError(f"{path} holds no checkpoint-epoch*.pt and no "
                            f"backbone/{WEIGHTS_NAME}")


def build_run_backbone(weights: RunWeights, seed: int | None = None) -> nn.Module:
    """The run's model (``config.model`` with its ``model_kwargs``, no classifier) with
    ``weights`` loaded strictly, in eval mode."""
    config = weights.config
    model = create_backbone(config.model, seed=seed, **config.model_kwargs)
    load_backbone_weights(model, weights.state, weights.source)
    return model.eval()
