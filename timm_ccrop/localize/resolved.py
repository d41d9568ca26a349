"""What a localizer does on one model: its settings resolved, and whether its map is fine
enough to give boxes.

:meth:`~timm_ccrop.localize.localizers.Localizer.resolve` fills a :class:`ResolvedLocalizer`
(family defaults filled in, the hooked module named); pictures, the box pass's result and
model cards all describe a localizer through it, so none of them restates a setting.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from .hooks import MIN_MAP_SIZE

__all__ = ["ResolvedLocalizer", "warn_too_coarse"]


@dataclass(frozen=True)
class ResolvedLocalizer:
    """A localizer's settings on one model, every default resolved.

    ``reduction`` is None for localizers that read the raw features (``ddt``, ``ccam``);
    ``threshold`` is the union rule's k (None for other rules). ``family_defaults`` names
    the settings that are the model family's defaults
    (:func:`~timm_ccrop.localize.heatmaps.localization_defaults`).
    """

    description: str  #: Localizer.describe(): the name and the options as given
    stage: int
    module: str  #: the hooked stage's module (the last one when stages are fused)
    reduction: str | None
    threshold: float | None
    finer: bool = False  #: the last downsampling stride removed at inference
    fuse: tuple[int, ...] = ()
    background: str | None = None  #: 'median': the dataset's median map subtracted
    family_defaults: tuple[str, ...] = ()

    def _value(self, key: str) -> str:
        value = getattr(self, key)
        text = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{text} (family default)" if key in self.family_defaults else text

    def card_params(self) -> dict[str, Any]:
        """The settings as a model card lists them (only those that apply)."""
        params: dict[str, Any] = {"localizer": self.description, "stage": self.stage}
        if self.fuse:
            params["fuse"] = list(self.fuse)
        for key in ("reduction", "threshold"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key) if key not in self.family_defaults \
                    else self._value(key)
        if self.finer:
            params["finer_map"] = "last downsampling stride removed"
        if self.background:
            params["background"] = f"dataset {self.background} map subtracted"
        return params

    def text(self) -> str:
        """One line for picture titles and logs, e.g. ``peak(background=median), stage -1
        (layer4), reduction sum (family default), stride removed, median subtracted``."""
        stages = f"stages {list(self.fuse)}" if self.fuse else f"stage {self.stage}"
        parts = [self.description, f"{stages} ({self.module})"]
        if self.reduction is not None:
            parts.append(f"reduction {self._value('reduction')}")
        if self.threshold is not None:
            parts.append(f"k={self._value('threshold')}")
        if self.finer:
            parts.append("stride removed")
        if self.background:
            parts.append(f"{self.background} subtracted")
        return ", ".join(parts)


def warn_too_coarse(description: str, model_name: str, map_size: tuple[int, int],
                    image_size: tuple[int, int], stacklevel: int = 3) -> bool:
    """Warn when ``map_size`` is below :data:`~timm_ccrop.localize.hooks.MIN_MAP_SIZE` per
    side (every box would be the whole image); True when it is."""
    height, width = map_size
    if min(height, width) >= MIN_MAP_SIZE:
        return False
    warnings.warn(
        f"{description} gives {height}x{width} maps on {model_name} at {image_size[0]}x"
        f"{image_size[1]} px: too coarse to localize, so every box is the whole image. Use "
        "an earlier stage (--localizer-kwargs '{stage: -2}'), larger images, or a "
        "small-image stem (e.g. resnet18_cifar: 3x3 stride-1 stem, no max-pool).",
        stacklevel=stacklevel)
    return True
