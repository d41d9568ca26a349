"""Pretraining configuration: one dataclass, YAML recipes, command-line overrides.

A run is fully described by a :class:`TrainConfig`. Recipes in ``zoo/recipes/*.yaml``
hold the paper's settings; ``--recipe NAME`` loads one and any ``--key value`` on the
command line overrides it. The resolved config is saved with every run and checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .transforms import CROP_MODES, default_alpha
from .views import VIEW_PRESETS, view_preset

__all__ = ["RECIPE_DIR", "TrainConfig", "list_recipes", "load_recipe"]

RECIPE_DIR = Path(str(resources.files("timm_ccrop.zoo") / "recipes"))

BOX_SOURCES = ("model", "ground-truth")
MIXED_PRECISION = ("no", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    """Everything a pretraining run needs. Defaults: a short CPU job on the built-in data."""

    # data
    data: str = "synthetic:num_samples=1000,image_size=32"
    eval_data: str | None = None  # kNN monitor split; default: the dataset's eval split
    views: str = "cifar"  # view preset of timm_ccrop.views
    image_size: int | None = None  # default: the preset's size
    num_workers: int = 2
    augment_on: str = "loader"  # 'loader' (PIL, per image) or 'device' (batched tensors)
    # model and method
    model: str = "resnet_tiny_cifar"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = "simclr"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    # ContrastiveCrop
    crop: str = "ccrop"
    alpha: float | None = None  # default: the crop's own (ccrop 0.6, simccrop 0.1)
    threshold: float | None = None  # default: per backbone family
    reduction: str | None = None  # default: per backbone family
    stage: int = -1
    warmup_epochs: int | None = None  # default: 20% of training
    loc_interval: int | None = None  # default: 20% of training
    box_source: str = "model"  # or 'ground-truth' (the oracle, where the data has boxes)
    # optimisation
    epochs: int = 5
    batch_size: int = 128  # global, over all processes
    optimizer: str = "sgd"
    lr: float = 0.5
    lr_base_batch: int | None = None  # scale lr by batch_size / lr_base_batch when set
    min_lr_ratio: float = 0.0
    lr_warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    exclude_norm_bias: bool = True
    grad_clip: float | None = None
    # execution
    mixed_precision: str = "no"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool | None = None  # default: the method's choice, on CUDA with >1 process only
    seed: int = 0
    output: str = "runs/pretrain"
    save_every: int = 1
    keep_checkpoints: int = 2
    knn_every: int = 1  # 0 disables the kNN monitor
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_max_train: int | None = 10000
    pictures: int = 8  # images in the box picture after each pass (0: none)
    log_with: str | None = None  # e.g. 'tensorboard'
    progress: bool = True

    def resolved_alpha(self) -> float | None:
        """The crop's Beta parameter: ``alpha`` or the crop mode's default (None: rcrop)."""
        if self.crop == "rcrop":
            return None
        return self.alpha if self.alpha is not None else default_alpha(self.crop)

    def resolved_image_size(self) -> int:
        """``image_size`` or the view preset's size."""
        if self.image_size is not None:
            return int(self.image_size)
        return view_preset(self.views)[0].size

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the view preset (also what an export records)."""
        recipe = view_preset(self.views)[0]
        return tuple(recipe.mean), tuple(recipe.std)

    def resolved_schedule(self) -> tuple[int, int]:
        """``(warmup_epochs, loc_interval)``: defaults are 20% of training each."""
        fifth = max(1, self.epochs // 5)
        warmup = fifth if self.warmup_epochs is None else self.warmup_epochs
        interval = fifth if self.loc_interval is None else self.loc_interval
        return warmup, interval

    def uses_boxes_from(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) crops with the boxes (official: after the warm-up)."""
        warmup, _ = self.resolved_schedule()
        return self.crop == "ccrop" and epoch >= warmup + 1

    def box_update_due(self, epoch: int) -> bool:
        """Whether boxes are recomputed after ``epoch`` (1-based), as the official code:
        after the warm-up, every interval, never after the last epoch."""
        warmup, interval = self.resolved_schedule()
        return (
            self.crop == "ccrop"
            and self.box_source == "model"
            and epoch >= warmup
            and epoch != self.epochs
            and epoch % interval == 0
        )

    def validate(self) -> None:
        """Reject invalid settings up front, naming the value and the fix."""
        problems = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.min_lr_ratio <= 1,
             f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.lr_warmup_epochs >= 0,
             f"lr_warmup_epochs must be >= 0, got {self.lr_warmup_epochs}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.alpha is None or (math.isfinite(self.alpha) and self.alpha > 0),
             f"alpha must be > 0, got {self.alpha}")
        need(self.threshold is None or 0 <= self.threshold <= 1,
             f"threshold must be in [0, 1], got {self.threshold}")
        need(self.crop in CROP_MODES, f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        need(self.box_source in BOX_SOURCES,
             f"box_source must be one of {BOX_SOURCES}, got {self.box_source!r}")
        need(self.mixed_precision in MIXED_PRECISION,
             f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        need(self.optimizer in OPTIMIZERS,
             f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        need(self.augment_on in ("loader", "device"),
             f"augment_on must be 'loader' or 'device', got {self.augment_on!r}")
        need(self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}")
        need(self.keep_checkpoints >= 1,
             f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        need(self.knn_every >= 0, f"knn_every must be >= 0, got {self.knn_every}")
        need(self.grad_clip is None or self.grad_clip > 0,
             f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.views not in VIEW_PRESETS:
            problems.append(f"unknown view preset {self.views!r}; choose from "
                            f"{', '.join(VIEW_PRESETS)}")
        warmup, interval = self.resolved_schedule()
        need(warmup >= 0 and interval >= 1,
             f"warmup_epochs must be >= 0 and loc_interval >= 1, got {warmup}, {interval}")
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (unknown keys rejected)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``zoo/recipes``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe's settings as a dict, by name (``zoo/recipes/NAME.yaml``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"recipe {name_or_path!r} not found at {path}; available: {list_recipes()}"
        )
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of config keys, got {type(values)}")
    values.pop("description", None)
    TrainConfig.from_dict(values)  # unknown keys fail here, naming the file's mistakes
    return values


def config_field_types() -> dict[str, Any]:
    """Field name -> annotation string, for the command line."""
    return {f.name: f.type for f in dataclasses.fields(TrainConfig)}
