"""``timm-ccrop show-boxes``: a model's heatmaps, boxes and ContrastiveCrop views as a PNG.

A thin command: the parser is generated from
:class:`~timm_ccrop.pictures.settings.ShowBoxesConfig`'s fields; the arguments are checked
(before any data or weights are read), the backbone comes from
:mod:`timm_ccrop.models.backbones`, and the picture and the IoU from
:func:`timm_ccrop.pictures.localization.localization_picture`.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..data import build_dataset, default_train_split, parse_data_spec
from ..localize import HarvestLocalizer, Localizer
from ..models.backbones import create_backbone, load_backbone_weights, probe_model, read_state_dict
from ..pictures.localization import LocalizationPicture, class_labels, localization_picture
from ..pictures.settings import SHOW_BOXES_GROUPS, ShowBoxesConfig
from .options import HelpFormatter, add_config_arguments, config_values

__all__ = ["LEGACY_FLAGS", "add_show_boxes_parser", "run_show_boxes", "show_boxes_config"]

#: Old flags (before 2026-12; hidden), read as localizer options with a FutureWarning.
LEGACY_FLAGS = ("threshold", "reduction", "stage")


def show_boxes_config(args: argparse.Namespace,
                      parser: argparse.ArgumentParser | None = None) -> ShowBoxesConfig:
    """The settings of ``args``, validated: a bad value is ``parser``'s one-line error
    (exit code 2), or a ValueError without a parser."""
    config = ShowBoxesConfig(**config_values(args, ShowBoxesConfig))
    try:
        config.validate()
    except ValueError as err:
        if parser is None:
            raise
        parser.error(str(err))
    return config


def _checked_inputs(config: ShowBoxesConfig, localizer: Localizer
                    ) -> tuple[Path, Path | None, Any, str, dict[str, Any]]:
    """Everything that can be checked without data or weights, first.

    Returns the output path, the checkpoint (or None), the data spec, its split and the
    backbone's extra ``create_model`` arguments.
    """
    out = Path(config.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {str(out)!r}")
    if config.checkpoint is not None and config.pretrained:
        raise ValueError("give either --checkpoint or --pretrained, not both")
    checkpoint = Path(config.checkpoint).expanduser() if config.checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist or is not a file")
    spec = parse_data_spec(config.data)
    split = config.split or default_train_split(spec)
    probe, model_kwargs = probe_model(config.model)
    if probe is not None:
        localizer.check(probe)  # ValueError for a stage it does not have
    return out, checkpoint, spec, split, model_kwargs


def _localizer(config: ShowBoxesConfig, args: argparse.Namespace) -> Localizer:
    """The localizer of the settings, built exactly as the trainer builds it (the old
    ``--stage/--reduction/--threshold`` are read as localizer options, with a warning, as
    an old config.yaml's keys are)."""
    legacy = {key: getattr(args, key) for key in LEGACY_FLAGS
              if getattr(args, key, None) is not None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        localizer = config.build_localizer(legacy)  # a bad value: its error alone, one line
    for item in caught:  # the old flags' FutureWarning, once they were read
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if isinstance(localizer, HarvestLocalizer):
        # its maps come from many training steps; a single pass over a few images has none
        raise ValueError("--localizer harvest reads the maps of the training forward and "
                         "needs a training run; show-boxes runs one forward: use peak (the "
                         "default) or another localizer")
    return localizer


def _backbone(config: ShowBoxesConfig, checkpoint: Path | None,
              model_kwargs: dict[str, Any]) -> nn.Module:
    """The backbone in eval mode: random, timm's pretrained or the checkpoint's weights."""
    try:
        model = create_backbone(config.model, pretrained=config.pretrained, seed=config.seed,
                                verify=config.verify_weights, **model_kwargs)
    except ValueError as err:
        if not config.pretrained or "pretrained weights" not in str(err):
            raise
        # show-boxes (unlike pretrain) can take the weights from a file instead
        raise ValueError(f"{err}; or pass --checkpoint PATH (a weights file)") from err
    if checkpoint is not None:
        ignored = load_backbone_weights(model, read_state_dict(checkpoint, config.verify_weights),
                                        source=f"checkpoint {checkpoint}")
        note = f" (ignored classifier weights: {', '.join(ignored)})" if ignored else ""
        print(f"loaded {checkpoint}{note}")
    return model.eval()


def _report(config: ShowBoxesConfig, picture: LocalizationPicture, out: Path,
            count: int) -> None:
    """Print what the picture shows: where it is, the localizer's settings, the IoU."""
    print(f"wrote {out.resolve()} ({picture.grid.width}x{picture.grid.height}, {count} "
          f"images, {config.num_views} ContrastiveCrop views each)")
    print(picture.summary(config.model))
    if picture.mean_iou is not None:
        print(f"mean IoU with ground truth over the {count} shown images: "
              f"{picture.mean_iou:.3f} (whole-image box: {picture.whole_image_iou:.3f})")
    else:
        print(f"note: {config.data} has no ground-truth boxes; no IoU")


def run_show_boxes(args: argparse.Namespace,
                   parser: argparse.ArgumentParser | None = None) -> int:
    """Write the picture of ``args`` and print what it shows; the exit code. A bad value
    is ``parser``'s error (exit code 2), or a ValueError without a parser."""
    config = show_boxes_config(args, parser)
    localizer = _localizer(config, args)
    out, checkpoint, spec, split, model_kwargs = _checked_inputs(config, localizer)
    dataset = build_dataset(spec, split=split)
    count = min(config.num_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    gt_all = getattr(dataset, "gt_boxes", None)
    model = _backbone(config, checkpoint, model_kwargs)
    picture = localization_picture(
        model, images, gt_all[:count].float() if gt_all is not None else None,
        name=config.model, localizer=localizer, image_size=config.image_size,
        views=config.num_views, opacity=config.opacity, alpha=config.alpha, tile=config.tile,
        seed=config.seed, source=f"{config.data} [{split}]",
        labels=class_labels(dataset, count),
    )
    for message in picture.warnings:
        print(f"warning: {message}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.grid.save(out, format="PNG")
    _report(config, picture, out, count)
    return 0


def _yaml_value(text: str) -> Any:
    """An argparse ``type``: any YAML value (``'9'`` is 9); one-line error otherwise."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"not a YAML value: {text!r}") from None


def add_show_boxes_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``show-boxes`` to the subcommands ``commands``; returns its parser (generated
    from :class:`ShowBoxesConfig`'s fields)."""
    show = commands.add_parser(
        "show-boxes", help="render a model's heatmaps, boxes and ContrastiveCrop views to a PNG",
        description="Run a timm backbone over a few images and draw what ContrastiveCrop's "
                    "localization sees: the map the localizer's rule reads (as the trainer's "
                    "box pass reads it) overlaid on each image, the localizer's box (white), "
                    "the ground-truth box (green) where the dataset has one, and "
                    "ContrastiveCrop views sampled from the box. Prints the mean IoU with the "
                    "ground truth.",
        formatter_class=HelpFormatter,
    )
    add_config_arguments(show, ShowBoxesConfig, groups=SHOW_BOXES_GROUPS)
    for legacy in LEGACY_FLAGS:  # deprecated: --localizer-kwargs '{stage: ...}'
        show.add_argument(f"--{legacy}", default=None, type=_yaml_value,
                          help=argparse.SUPPRESS)
    show.set_defaults(handler=functools.partial(run_show_boxes, parser=show))
    return show
