"""Linear-probe recipes (``zoo/probes/*.yaml``) and the paper mode's train augmentation."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from torchvision import transforms
from torchvision.transforms import InterpolationMode

__all__ = [
    "ProbeRecipe",
    "is_augmenting",
    "list_probe_recipes",
    "load_probe_recipe",
    "probe_train_transform",
]


def _probe_dirs() -> list[Any]:
    """The folder of probe recipes shipped with the package (``timm_ccrop.zoo``)."""
    installed = resources.files("timm_ccrop.zoo") / "probes"
    return [installed] if installed.is_dir() else []


@dataclass
class ProbeRecipe:
    """Settings of a linear probe (``zoo/probes/NAME.yaml``); defaults: ``small``.

    ``decay_at`` are fractions of ``epochs`` where the lr is multiplied by ``gamma``
    (``(0.6, 0.8)`` of 100 epochs: epochs 60 and 80), so ``--epochs`` keeps the shape of
    the schedule. ``train_scale``/``hflip`` are the paper mode's augmentation.
    ``test_crop_pct``: the eval transform's crop fraction (1.0: the whole image; None:
    the model's pretrained_cfg).
    """

    name: str = "small"
    description: str = ""
    epochs: int = 100
    batch_size: int = 512
    lr: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    decay_at: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.1
    init_std: float = 0.01
    train_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    test_crop_pct: float | None = 1.0

    def __post_init__(self) -> None:
        self.decay_at = tuple(float(f) for f in self.decay_at)
        self.train_scale = tuple(float(s) for s in self.train_scale)  # type: ignore[assignment]
        problems = []
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            problems.append(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            problems.append(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if any(not 0 < f < 1 for f in self.decay_at):
            problems.append(f"decay_at must be fractions in (0, 1), got {list(self.decay_at)}")
        if not 0 < self.gamma <= 1:
            problems.append(f"gamma must be in (0, 1], got {self.gamma}")
        if not self.init_std >= 0:
            problems.append(f"init_std must be >= 0, got {self.init_std}")
        if len(self.train_scale) != 2 or not 0 < self.train_scale[0] <= self.train_scale[1] <= 1:
            problems.append(f"train_scale must be (lo, hi) with 0 < lo <= hi <= 1, got "
                            f"{list(self.train_scale)}")
        if not 0 <= self.hflip <= 1:
            problems.append(f"hflip must be in [0, 1], got {self.hflip}")
        if self.test_crop_pct is not None and not 0 < self.test_crop_pct <= 1:
            problems.append(f"test_crop_pct must be in (0, 1] or null, got {self.test_crop_pct}")
        if problems:
            raise ValueError(f"invalid probe recipe {self.name!r}: " + "; ".join(problems))

    def milestones(self) -> list[int]:
        """Epochs after which the lr decays (``MultiStepLR`` milestones)."""
        steps = {round(f * self.epochs) for f in self.decay_at}
        return sorted(s for s in steps if 0 < s < self.epochs)

    def replace(self, **changes: Any) -> ProbeRecipe:
        """A copy with ``changes`` (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The recipe as eval.json records it (lists, and the resolved milestones)."""
        values = dataclasses.asdict(self)
        values["decay_at"] = list(self.decay_at)
        values["train_scale"] = list(self.train_scale)
        values["milestones"] = self.milestones()
        return values


def list_probe_recipes() -> list[str]:
    """Names of the probe recipes shipped in ``zoo/probes``."""
    return sorted({p.name[:-5] for d in _probe_dirs() for p in d.iterdir()
                   if p.name.endswith(".yaml")})


def load_probe_recipe(name_or_path: str) -> ProbeRecipe:
    """A probe recipe by name (``zoo/probes/NAME.yaml``) or path to a YAML file."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"probe recipe {path} does not exist")
        text, name = path.read_text(), path.stem
    else:
        resource = next((d / f"{name_or_path}.yaml" for d in _probe_dirs()
                         if (d / f"{name_or_path}.yaml").is_file()), None)
        if resource is None:
            raise FileNotFoundError(
                f"probe recipe {name_or_path!r} not found; shipped: "
                f"{', '.join(list_probe_recipes())}, or give a path to a YAML file"
            )
        text, name = resource.read_text(), name_or_path
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:  # bad syntax, or a tag such as !!python/object
        raise ValueError(f"probe recipe {name_or_path} is not valid YAML "
                         f"({' '.join(str(err).split())[:200]}); fix the file or use a "
                         f"shipped recipe: {', '.join(list_probe_recipes())}") from err
    if not isinstance(values, dict):
        raise ValueError(f"probe recipe {name_or_path} must be a mapping of probe settings, "
                         f"got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(ProbeRecipe)} - {"name"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in probe recipe {name_or_path}; known keys: "
                         f"{sorted(known)}")
    try:
        return ProbeRecipe(name=name, **values)
    except TypeError as err:  # a value of the wrong kind: lr: abc, decay_at: 5
        raise ValueError(f"probe recipe {name_or_path} has a value of the wrong type ({err}); "
                         "numbers where numbers belong, lists for decay_at and train_scale"
                         ) from err


def probe_train_transform(size: int, mean: Sequence[float], std: Sequence[float],
                          recipe: ProbeRecipe, interpolation: str = "bilinear") -> Any:
    """The paper mode's train augmentation: RandomResizedCrop(size) + flip, normalise."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=tuple(recipe.train_scale),
                                     interpolation=InterpolationMode(interpolation)),
        transforms.RandomHorizontalFlip(recipe.hflip),
        transforms.ToTensor(),
        transforms.Normalize(tuple(mean), tuple(std)),
    ])


def is_augmenting(transform: Any) -> bool:
    """Whether ``transform`` (or a step of its Compose) crops or flips at random."""
    steps = getattr(transform, "transforms", [transform])
    random = (transforms.RandomResizedCrop, transforms.RandomHorizontalFlip)
    return any(isinstance(step, random) for step in steps)
