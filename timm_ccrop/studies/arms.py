"""The arms of a crop comparison: which crop, which boxes, which localizer.

Every arm is one of the package's crop modes (:data:`timm_ccrop.crop.transforms.CROP_MODES`)
with a box source; the arms only name the variants a comparison needs:

* ``rcrop``: RandomResizedCrop, the baseline every other arm is paired with (same seed);
* ``ccrop-paper``: ContrastiveCrop with the model's boxes from the ``paper`` localizer;
* ``ccrop``: ContrastiveCrop with the model's boxes from the localizer under test;
* ``ccrop-harvest``: ContrastiveCrop with boxes harvested from the training forward's maps;
* ``ccrop-gt``: ContrastiveCrop with the ground-truth boxes, the oracle;
* ``simccrop``: the fixed centre box of SimCCrop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..crop.boxes import validate_box
from ..crop.transforms import CROP_MODES, DEFAULT_ALPHA, SIMCCROP_BOX
from ..localize import create_localizer
from ..runs import RunFolder

__all__ = ["ARMS", "BASELINE", "MODEL_BOX_ARMS", "ORACLE", "RANDOM_INIT", "Arm",
           "arm_boxes", "arm_variant", "describe_localizer", "localizer_for",
           "read_final_boxes"]


@dataclass(frozen=True)
class Arm:
    """One arm: a crop mode of the package, where its boxes come from, and the localizer
    it always uses (None: the comparison's ``localizer``, or no localizer at all)."""

    crop: str
    box_source: str
    localizer: str | None = None

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"arm crop {self.crop!r} is not one of {CROP_MODES}")


ARMS: dict[str, Arm] = {
    "rcrop": Arm("rcrop", "model"),
    "ccrop-paper": Arm("ccrop", "model", localizer="paper"),
    "ccrop": Arm("ccrop", "model"),
    "ccrop-harvest": Arm("ccrop", "model", localizer="harvest"),
    "ccrop-gt": Arm("ccrop", "ground-truth"),
    "simccrop": Arm("simccrop", "model"),
}
BASELINE = "rcrop"
ORACLE = "ccrop-gt"
#: The evaluation of the untrained network of each seed (is the baseline learning at all?).
RANDOM_INIT = "random-init"
#: The arms whose boxes come from a localizer run on the model (boxes.csv, box IoU per
#: pass, box-pass overhead).
MODEL_BOX_ARMS = ("ccrop-paper", "ccrop", "ccrop-harvest")


def localizer_for(mode: str, localizer: tuple[str, dict[str, Any]]
                  ) -> tuple[str, dict[str, Any]] | None:
    """The localizer ``(name, options)`` of a model-box arm (``localizer``: the one under
    test, used by the ``ccrop`` arm), None for the other arms."""
    if mode not in MODEL_BOX_ARMS:
        return None
    fixed = ARMS[mode].localizer
    return (fixed, {}) if fixed is not None else (localizer[0], dict(localizer[1]))


def describe_localizer(mode: str, localizer: tuple[str, dict[str, Any]]) -> str | None:
    """``name(options)`` of an arm's localizer (``create_localizer(...).describe()``)."""
    chosen = localizer_for(mode, localizer)
    return None if chosen is None else create_localizer(chosen[0], **chosen[1]).describe()


def arm_variant(mode: str, localizer: tuple[str, dict[str, Any]], alpha: float,
                box_warmup_epochs: int | None, box_momentum: float = 0.0) -> str:
    """Folder suffix of a ContrastiveCrop arm: the localizer of the 'ccrop' arm (name and
    options, always: the project default changes), an alpha other than ContrastiveCrop's
    default (``-a0.1``), a box warm-up (``-w2``) or, for the model-box arms, a box momentum
    (``-m0.9``); '' for rcrop and the random init.
    Variant grids share one runs folder (and its rcrop cells) without overwriting cells."""
    if mode in (BASELINE, RANDOM_INIT):
        return ""
    parts = []
    if mode == "ccrop":
        name, options = localizer_for(mode, localizer) or localizer
        words = [name, *(word for item in sorted(options.items()) for word in item)]
        parts.append("".join("-" + re.sub(r"[^A-Za-z0-9.]+", "_", str(word))
                             for word in words))
    if alpha != DEFAULT_ALPHA["ccrop"]:
        parts.append(f"-a{alpha:g}")
    if box_warmup_epochs is not None:
        parts.append(f"-w{box_warmup_epochs}")
    if box_momentum and mode in MODEL_BOX_ARMS:
        parts.append(f"-m{box_momentum:g}")
    return "".join(parts)


def read_final_boxes(run: Path, count: int) -> list[Any]:
    """Crop boxes of a run's final box table (``boxes.csv``); invalid rows and a missing
    file give None (RandomResizedCrop, as in training)."""
    folder = RunFolder(run)
    if not folder.boxes_path.exists():
        return [None] * count
    table, valid, _ = folder.read_boxes()
    boxes: list[Any] = [validate_box(row) if ok else None
                        for row, ok in zip(table.tolist(), valid.tolist(), strict=True)]
    return boxes + [None] * (count - len(boxes))


def arm_boxes(mode: str, run: Path | None, count: int, gt: torch.Tensor | None) -> list[Any]:
    """The crop box of every training image an arm crops with (None: a random crop)."""
    if mode == BASELINE:
        return [None] * count
    if mode == "simccrop":
        return [SIMCCROP_BOX] * count
    if mode == ORACLE:
        if gt is None:
            raise ValueError("the oracle arm needs ground-truth boxes")
        return [validate_box(row) for row in gt.tolist()]
    if mode not in MODEL_BOX_ARMS or run is None:
        raise ValueError(f"arm {mode!r} has no boxes of its own")
    return read_final_boxes(run, count)
