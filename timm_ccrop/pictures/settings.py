"""The settings of a localization picture (the options of ``timm-ccrop show-boxes``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import MIN_IMAGE_SIZE, TrainConfig
from ..crop.transforms import CCROP_ALPHA
from ..localize import DEFAULT_LOCALIZER, LOCALIZERS, Localizer
from ..utils.fields import field_problems, option

__all__ = ["SHOW_BOXES_GROUPS", "ShowBoxesConfig"]

#: The option groups of ``timm-ccrop show-boxes``, in help order.
SHOW_BOXES_GROUPS = ("input", "localization", "picture")

_INPUT, _LOCALIZATION, _PICTURE = SHOW_BOXES_GROUPS


@dataclass
class ShowBoxesConfig:
    """Settings of a localization picture: which images, which backbone and weights, which
    localizer, and how the picture is drawn (the options of ``timm-ccrop show-boxes``,
    generated from these fields; drawn by
    :func:`~timm_ccrop.pictures.localization.localization_picture`).
    """

    data: str = option("synthetic", "dataset spec, e.g. synthetic, cifar10:PATH, folder:PATH "
                       "(default: the built-in synthetic set)", group=_INPUT)
    split: str | None = option(None, "dataset split (default: the pretraining split, usually "
                               "train)", group=_INPUT)
    model: str = option("test_resnet", "any timm model name, also hf-hub:ORG/NAME or "
                        "local-dir:PATH", group=_INPUT)
    checkpoint: str | None = option(None, "weights to load: a .safetensors file or a "
                                    "torch.save'd state dict (possibly nested under "
                                    "'model'/'state_dict')", group=_INPUT)
    verify_weights: bool = option(True, "check --checkpoint against the sha256 recorded when "
                                  "it was written (--no-verify-weights: for a file edited on "
                                  "purpose)", group=_INPUT)
    pretrained: bool = option(False, "load timm's pretrained weights (needs the Hub or a "
                              "filled cache)", group=_INPUT)
    image_size: int | None = option(None, "input resolution of the box pass in pixels "
                                    "(default: the images' own size, at most 224)",
                                    group=_LOCALIZATION, low=MIN_IMAGE_SIZE)
    localizer: str = option(DEFAULT_LOCALIZER, "how heatmaps become boxes, as in the "
                            "trainer", group=_LOCALIZATION, choices=LOCALIZERS)
    localizer_kwargs: dict[str, Any] | None = option(
        None, "options of the localizer, as the trainer's, e.g. '{stage: -2, reduction: l2}' "
        "(threshold: the union rule's k); given options replace the localizer's defaults",
        group=_LOCALIZATION)
    alpha: float = option(CCROP_ALPHA, "Beta(alpha, alpha) of ContrastiveCrop's views "
                          f"(default: the paper's, {CCROP_ALPHA})", group=_PICTURE, low=0,
                          low_open=True)
    opacity: float = option(0.5, "weight of the heatmap colours in the overlay",
                            group=_PICTURE, low=0, high=1)
    num_images: int = option(6, "images to draw", group=_PICTURE, low=1)
    num_views: int = option(4, "ContrastiveCrop views per image (0 for none)", group=_PICTURE,
                            low=0)
    tile: int = option(96, "tile size in pixels", group=_PICTURE, low=16)
    out: str = option("ccrop_boxes.png", "PNG file to write", group=_PICTURE)
    seed: int = option(0, "seed of the views' sampler and of a randomly initialised model",
                       group=_PICTURE)

    def validate(self) -> None:
        """Raise one ValueError that names every invalid setting (the fields' declared
        types, choices and bounds, the same ones the command line is built from)."""
        problems = field_problems(self)
        if problems:
            raise ValueError("invalid show-boxes settings: " + "; ".join(problems))

    def build_localizer(self, legacy: Mapping[str, Any] | None = None) -> Localizer:
        """The localizer of these settings, built exactly as the trainer builds it.

        ``legacy``: the old ``stage``/``reduction``/``threshold`` keys, read as localizer
        options with a FutureWarning, as an old config.yaml's keys are.
        """
        return TrainConfig.from_dict({"localizer": self.localizer,
                                      "localizer_kwargs": self.localizer_kwargs,
                                      **(legacy or {})}).build_localizer()
