"""``timm-ccrop show-boxes``: a model's heatmaps, boxes and ContrastiveCrop views as a PNG.

A thin command: the arguments are checked (before any data or weights are read), the
backbone comes from :mod:`timm_ccrop.models.backbones`, and the picture and the IoU from
:func:`timm_ccrop.pictures.localization.localization_picture`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from ..config import TrainConfig
from ..data import build_dataset, default_train_split, parse_data_spec
from ..localize import LOCALIZERS, HarvestLocalizer, Localizer
from ..models.backbones import create_backbone, load_backbone_weights, probe_model, read_state_dict
from ..pictures.localization import class_labels, localization_picture
from .options import add_verify_weights_argument, number, yaml_mapping

__all__ = ["add_show_boxes_parser", "run_show_boxes"]


def _checked_inputs(args: argparse.Namespace, localizer: Localizer
                    ) -> tuple[Path, Path | None, Any, str, dict[str, Any]]:
    """Everything that can be checked without data or weights, first.

    Returns the output path, the checkpoint (or None), the data spec, its split and the
    backbone's extra ``create_model`` arguments.
    """
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {str(out)!r}")
    if args.checkpoint is not None and args.pretrained:
        raise ValueError("give either --checkpoint or --pretrained, not both")
    checkpoint = Path(args.checkpoint).expanduser() if args.checkpoint is not None else None
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist or is not a file")
    spec = parse_data_spec(args.data)
    split = args.split or default_train_split(spec)
    probe, model_kwargs = probe_model(args.model)
    if probe is not None:
        localizer.check(probe)  # ValueError for a stage it does not have
    return out, checkpoint, spec, split, model_kwargs


def _localizer(args: argparse.Namespace) -> Localizer:
    """The localizer of the flags, built exactly as the trainer builds it (the old
    ``--stage/--reduction/--threshold`` are read as localizer options, with a warning, as
    an old config.yaml's keys are)."""
    legacy = {key: getattr(args, key) for key in ("threshold", "reduction", "stage")
              if getattr(args, key) is not None}
    localizer = TrainConfig.from_dict({"localizer": args.localizer,
                                       "localizer_kwargs": args.localizer_kwargs,
                                       **legacy}).build_localizer()
    if isinstance(localizer, HarvestLocalizer):
        # its maps come from many training steps; a single pass over a few images has none
        raise ValueError("--localizer harvest reads the maps of the training forward and "
                         "needs a training run; show-boxes runs one forward: use peak (the "
                         "default) or another localizer")
    return localizer


def run_show_boxes(args: argparse.Namespace) -> int:
    """Write the picture of ``args`` and print what it shows; the exit code."""
    localizer = _localizer(args)
    out, checkpoint, spec, split, model_kwargs = _checked_inputs(args, localizer)
    dataset = build_dataset(spec, split=split)
    count = min(args.num_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    gt_all = getattr(dataset, "gt_boxes", None)
    try:
        model = create_backbone(args.model, pretrained=args.pretrained, seed=args.seed,
                                verify=args.verify_weights, **model_kwargs)
    except ValueError as err:
        if not args.pretrained or "pretrained weights" not in str(err):
            raise
        # show-boxes (unlike pretrain) can take the weights from a file instead
        raise ValueError(f"{err}; or pass --checkpoint PATH (a weights file)") from err
    if checkpoint is not None:
        ignored = load_backbone_weights(model, read_state_dict(checkpoint, args.verify_weights),
                                        source=f"checkpoint {checkpoint}")
        note = f" (ignored classifier weights: {', '.join(ignored)})" if ignored else ""
        print(f"loaded {checkpoint}{note}")
    model.eval()
    picture = localization_picture(
        model, images, gt_all[:count].float() if gt_all is not None else None,
        name=args.model, localizer=localizer, image_size=args.image_size,
        views=args.num_views, opacity=args.opacity,
        alpha=args.alpha, tile=args.tile, seed=args.seed, source=f"{args.data} [{split}]",
        labels=class_labels(dataset, count),
    )
    for message in picture.warnings:
        print(f"warning: {message}", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.grid.save(out, format="PNG")
    print(f"wrote {out.resolve()} ({picture.grid.width}x{picture.grid.height}, {count} "
          f"images, {args.num_views} ContrastiveCrop views each)")
    print(picture.summary(args.model))
    if picture.mean_iou is not None:
        print(f"mean IoU with ground truth over the {count} shown images: "
              f"{picture.mean_iou:.3f} (whole-image box: {picture.whole_image_iou:.3f})")
    else:
        print(f"note: {args.data} has no ground-truth boxes; no IoU")
    return 0


def add_show_boxes_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``show-boxes`` to the subcommands ``commands``; returns its parser."""
    show = commands.add_parser(
        "show-boxes", help="render a model's heatmaps, boxes and ContrastiveCrop views to a PNG",
        description="Run a timm backbone over a few images and draw what ContrastiveCrop's "
                    "localization sees: the map the localizer's rule reads (as the trainer's "
                    "box pass reads it) overlaid on each image, the localizer's box (white), "
                    "the ground-truth box (green) where the dataset has one, and "
                    "ContrastiveCrop views sampled from the box. Prints the mean IoU with the "
                    "ground truth.",
    )
    show.add_argument("--data", default="synthetic",
                      help="dataset spec, e.g. synthetic, cifar10:PATH, folder:PATH "
                           "(default: the built-in synthetic set)")
    show.add_argument("--split", default=None,
                      help="dataset split (default: the pretraining split, usually train)")
    show.add_argument("--model", default="test_resnet",
                      help="any timm model name, also hf-hub:ORG/NAME or local-dir:PATH "
                           "(default: test_resnet)")
    show.add_argument("--checkpoint", default=None, metavar="PATH",
                      help="weights to load: a .safetensors file or a torch.save'd state "
                           "dict (possibly nested under 'model'/'state_dict')")
    add_verify_weights_argument(show, "--checkpoint")
    show.add_argument("--pretrained", action="store_true",
                      help="load timm's pretrained weights (needs the Hub or a filled cache)")
    show.add_argument("--image-size", type=number(int, low=8, unit="pixels"), default=None,
                      help="input resolution of the box pass (default: the images' own size, "
                           "at most 224)")
    show.add_argument("--localizer", default=TrainConfig.localizer, choices=list(LOCALIZERS),
                      help="how heatmaps become boxes (default: the trainer's)")
    show.add_argument("--localizer-kwargs", type=yaml_mapping, default=None,
                      metavar="{key: value}",
                      help="options of the localizer, as the trainer's, e.g. '{stage: -2, "
                           "reduction: l2}' (threshold: the union rule's k); given options "
                           "replace the localizer's defaults")
    for legacy in ("--stage", "--reduction", "--threshold"):  # before 2026-12; deprecated
        show.add_argument(legacy, default=None, type=yaml.safe_load, help=argparse.SUPPRESS)
    show.add_argument("--alpha", type=number(float, low=0, low_open=True), default=0.6,
                      help="Beta(alpha, alpha) of ContrastiveCrop's views (paper: 0.6)")
    show.add_argument("--opacity", type=number(float, low=0, high=1), default=0.5,
                      help="weight of the heatmap colours in the overlay, in [0, 1]")
    show.add_argument("--num-images", type=number(int, low=1), default=6)
    show.add_argument("--num-views", type=number(int, low=0), default=4,
                      help="ContrastiveCrop views per image (0 for none)")
    show.add_argument("--tile", type=number(int, low=16, unit="pixels"), default=96,
                      help="tile size in pixels (>= 16)")
    show.add_argument("--out", default="ccrop_boxes.png", help="PNG file to write")
    show.add_argument("--seed", type=int, default=0,
                      help="seed of the views' sampler and of a randomly initialised model")
    show.set_defaults(handler=run_show_boxes)
    return show
