"""``timm-ccrop demo``: ContrastiveCrop vs RandomResizedCrop views of a dataset, as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..crop.boxes import Box
from ..crop.transforms import CCROP_ALPHA
from ..data import build_dataset
from ..pictures.viz import crop_views_grid
from .options import number

__all__ = ["add_demo_parser", "run_demo"]


def run_demo(args: argparse.Namespace) -> int:
    """Render the grid of ``args`` to ``args.out``; the exit code."""
    dataset = build_dataset(args.data, split="train")
    count = min(args.num_images, len(dataset))
    images = [dataset[i][0] for i in range(count)]
    gt_boxes = getattr(dataset, "gt_boxes", None)
    if gt_boxes is not None:
        boxes: list[Box | None] = [Box(*gt_boxes[i].tolist()) for i in range(count)]
        source = "ground-truth boxes"
    else:
        boxes = [None] * count
        source = "no boxes (whole image)"
        print(f"note: {args.data} has no ground-truth boxes; showing whole-image boxes")
    title = f"{args.data}: {source}, alpha={args.alpha}, scale=({args.min_scale}, 1.0)"
    grid = crop_views_grid(images, boxes, num_views=args.num_views, alpha=args.alpha,
                           scale=(args.min_scale, 1.0), tile=args.tile, seed=args.seed,
                           title=title)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out.resolve()} ({grid.width}x{grid.height}, {count} images, "
          f"{args.num_views} views per crop mode)")
    return 0


def add_demo_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the subcommands ``commands``; returns its parser."""
    demo = commands.add_parser(
        "demo", help="render ContrastiveCrop vs RandomResizedCrop views to a PNG",
        description="Render a grid of images with their boxes and sampled views of both crop "
                    "modes. Uses ground-truth boxes where the dataset has them (the built-in "
                    "synthetic set does).",
    )
    demo.add_argument("--data", default="synthetic",
                      help="dataset spec, e.g. synthetic, cifar10:PATH, folder:PATH "
                           "(default: the built-in synthetic set)")
    demo.add_argument("--out", default="ccrop_views.png", help="PNG file to write")
    demo.add_argument("--num-images", type=number(int, low=1), default=6)
    demo.add_argument("--num-views", type=number(int, low=1), default=4)
    demo.add_argument("--alpha", type=number(float, low=0, low_open=True), default=CCROP_ALPHA,
                      help=f"Beta(alpha, alpha) of ContrastiveCrop (paper: {CCROP_ALPHA})")
    demo.add_argument("--min-scale", type=number(float, low=0, high=1, low_open=True),
                      default=0.2, help="smallest crop area fraction (paper: 0.2)")
    demo.add_argument("--tile", type=number(int, low=1), default=96,
                      help="tile size in pixels")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)
    return demo
