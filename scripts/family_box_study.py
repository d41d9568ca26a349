#!/usr/bin/env python
"""Box quality per pass of short SSL runs, one per timm family (issue 21, item 2).

For every model: a SimCLR + ContrastiveCrop run with the default localizer on a
``scenes`` setting, with a box pass every ``--interval`` epochs and the weights of every
pass kept; its mean box IoU with the training split's ground truth after each pass, next
to the whole image's and to the same localizer on the random-init network (the bar the
first pass must clear). The runs' snapshots can then be scored with every candidate
localizer by ``scripts/localization_study.py``::

    python scripts/family_box_study.py --out docs/family-boxes.md
    python scripts/localization_study.py runs/family_boxes/* --random-init --out ...
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

import torch

from timm_ccrop.config import TrainConfig
from timm_ccrop.data import build_dataset
from timm_ccrop.localize import default_localizer, localize_dataset
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.runs import read_metrics
from timm_ccrop.train import train

#: model -> extra timm.create_model arguments (a ViT is told its input size).
FAMILIES: dict[str, dict[str, Any]] = {
    "resnet18": {},
    "convnext_atto": {},
    "deit_tiny_patch16_224": {"img_size": 96},
    "efficientnet_b0": {},
}
DEFAULT_DATA = ("scenes:num_samples=600,image_size=96,object_scale=0.35:0.6,"
                "backgrounds=mixed,seed=8")


def random_init_iou(model: str, kwargs: dict[str, Any], data: str, size: int,
                    seed: int) -> float:
    """Mean IoU of the default localizer's boxes on the random-init network."""
    backbone = create_backbone(model, seed=seed, **kwargs)
    dataset = build_dataset(data, split="train")
    result = localize_dataset(backbone, dataset, size, progress=False,
                              localizer=default_localizer())
    return result.mean_iou(dataset.gt_boxes.float())


def run_family(model: str, kwargs: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """One short run; its box IoU per pass and its references."""
    folder = Path(args.runs) / model
    config = TrainConfig(data=args.data, model=model, model_kwargs=kwargs, method="simclr",
                         crop="ccrop", epochs=args.epochs, box_warmup_epochs=args.interval,
                         loc_interval=args.interval, image_size=args.image_size,
                         batch_size=args.batch_size, lr=0.3, lr_warmup_epochs=1,
                         knn_every=0, pictures=4, progress=False, output=str(folder),
                         seed=args.seed, snapshots="passes")
    started = time.perf_counter()
    result = train(config, overwrite=True)
    seconds = time.perf_counter() - started
    metrics = read_metrics(result.metrics)
    passes = [(m["epoch"], m["box_mean_iou"]) for m in metrics if "box_mean_iou" in m]
    whole = next(m["whole_image_mean_iou"] for m in metrics if "whole_image_mean_iou" in m)
    return {"model": model, "passes": passes, "whole": whole, "seconds": seconds,
            "random_init": random_init_iou(model, kwargs, args.data, args.image_size,
                                           args.seed)}


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    epochs = [epoch for epoch, _ in rows[0]["passes"]]
    lines = [f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), "
             f"{time.strftime('%Y-%m-%d')}. Data `{args.data}`, {args.image_size} px views, "
             f"SimCLR + ContrastiveCrop with the default localizer, {args.epochs} epochs, "
             f"seed {args.seed}.", "",
             "| model | whole image | random init | " + " | ".join(
                 f"after ep {e}" for e in epochs) + " | train s |",
             "|---|---:|---:|" + "---:|" * len(epochs) + "---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['whole']:.3f} | {row['random_init']:.3f} | "
                     + " | ".join(f"{iou:.3f}" for _, iou in row["passes"])
                     + f" | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(FAMILIES),
                        help="timm models (the FAMILIES table adds their arguments)")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--interval", type=int, default=2,
                        help="epochs of random crops, then epochs between box passes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/family_boxes")
    parser.add_argument("--out", type=Path, default=Path("docs/family-boxes.md"))
    args = parser.parse_args(argv)
    rows = [run_family(model, FAMILIES.get(model, {}), args) for model in args.models]
    text = report(rows, args)
    args.out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
