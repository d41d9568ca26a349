#!/usr/bin/env python
"""Which localizer gives good boxes from SSL checkpoints, and how early? (issue 14)

Scores every candidate localizer (``CANDIDATES``) on the snapshots of real SimCLR runs
(``timm-ccrop pretrain --snapshots epochs``), against the ground-truth boxes of the
TRAINING split the runs trained on (never a test split, never downstream accuracy):

* mean IoU with the object box, coverage of the object (intersection / object area), the
  median of box area / object area, and the share of images without a box;
* per snapshot epoch, so that "how early" is visible (epoch 1 of 24 is 4% of training).

Writes a Markdown report and a picture of the same images with every candidate's box and
the ground truth (at the last snapshot of the first run)::

    python scripts/localization_study.py runs/loc_study/small-rcrop runs/loc_study/large-rcrop \\
        --out docs/localization_study.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from timm_ccrop.config import TrainConfig
from timm_ccrop.crop.boxes import box_area, paired_iou
from timm_ccrop.data import build_dataset, parse_data_spec
from timm_ccrop.localize import create_localizer, localize_dataset
from timm_ccrop.methods import build_method
from timm_ccrop.models.backbones import create_backbone
from timm_ccrop.runs import RunFolder, read_checkpoint

#: name -> (localizer, options). Finer maps for resnet_mini_cifar at 32 px: the last map is
#: 4x4 (layer4 is dilated, layer3 is 4x4 too); 'dilate' removes layer3's stride (8x8);
#: stage -3 is layer2 (8x8).
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "paper (union, sum, k=0.1)": ("paper", {}),
    "union, family default (k=0.4)": ("union", {}),
    "peak component > mean": ("component", {}),
    "largest component > mean": ("component", {"pick": "largest"}),
    "peak component > 0.2 max": ("component", {"rule": "max", "level": 0.2}),
    "largest component, top 60% mass": ("component", {"rule": "mass", "level": 0.6,
                                                      "pick": "largest"}),
    "peak > mean, previous stage (8x8)": ("component", {"stage": -3}),
    "peak > mean, fused stages": ("component", {"fuse": [-3, -1]}),
    "peak > mean, stride removed (8x8)": ("component", {"dilate": True}),
    "peak > 1.5 mean, stride removed": ("component", {"dilate": True, "level": 1.5}),
    "peak (default): > 2 mean, stride removed": ("peak", {}),
    "peak, dataset median map subtracted": ("peak", {"background": "median"}),
    "peak > mean, stride removed, x4 upsampled": ("component", {"dilate": True,
                                                                "upsample": 4}),
    "DDT (dataset principal direction)": ("ddt", {}),
    "DDT, stride removed": ("ddt", {"dilate": True}),
    "contrastive CAM": ("ccam", {}),
    "contrastive CAM, stride removed": ("ccam", {"dilate": True}),
    "contrastive CAM, stride removed, > 1.5 mean": ("ccam", {"dilate": True, "level": 1.5}),
    # issue 21: a box spanning comparable peaks, with and without the median map
    "peak, median map, keep 0.5": ("peak", {"background": "median", "keep": 0.5}),
    "peak, median map, keep 0.25": ("peak", {"background": "median", "keep": 0.25}),
    "peak, keep 0.5": ("peak", {"keep": 0.5}),
    "peak, contrast": ("peak", {"reduction": "contrast"}),
    "peak, contrast, keep 0.5": ("peak", {"reduction": "contrast", "keep": 0.5}),
    "peak, contrast, median map": ("peak", {"reduction": "contrast", "background": "median"}),
    "peak, contrast, keep 0.5, median map": ("peak", {"reduction": "contrast", "keep": 0.5,
                                                      "background": "median"}),
}


def load_snapshot(path: Path, random_init: bool = False) -> tuple[Any, TrainConfig]:
    """The SSL method (backbone + projector) of a snapshot, in eval mode; with
    ``random_init``, the same architecture at a random initialisation (seeded by the run's
    seed), the reference the first box pass must beat."""
    state, _ = read_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    torch.manual_seed(config.seed)
    method = build_method(config.method, create_backbone(config.model, **config.model_kwargs),
                          **config.method_kwargs)
    if not random_init:
        method.load_state_dict(state["model"])
    return method.eval(), config


def score(boxes: torch.Tensor, degenerate: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """IoU, object coverage, box/object area and boxless share against ground truth."""
    top_left = torch.maximum(boxes[:, :2], gt[:, :2])
    bottom_right = torch.minimum(boxes[:, 2:], gt[:, 2:])
    inter = (bottom_right - top_left).clamp_min(0).prod(dim=1)
    gt_area = box_area(gt).clamp_min(1e-12)
    return {"iou": float(paired_iou(boxes, gt).mean()),
            "coverage": float((inter / gt_area).mean()),
            "area_ratio": float((box_area(boxes) / gt_area).median()),
            "boxless": float(degenerate.float().mean())}


def study_run(folder: Path, epochs: list[int] | None, limit: int,
              candidates: dict[str, tuple[str, dict[str, Any]]] | None = None,
              random_init: bool = False) -> dict[str, Any]:
    """Every candidate (default: all of :data:`CANDIDATES`) on every selected snapshot of
    one run; with ``random_init`` also on the random-init network, as epoch 0."""
    candidates = CANDIDATES if candidates is None else candidates
    run = RunFolder(folder)
    snapshots = run.snapshots()
    if not snapshots:
        raise SystemExit(f"{folder} has no snapshots; train with --snapshots epochs")
    by_epoch = {int(p.stem.removeprefix("epoch")): p for p in snapshots}
    chosen = sorted(e for e in by_epoch if epochs is None or e in epochs)
    _, config = load_snapshot(by_epoch[chosen[0]])
    dataset = build_dataset(parse_data_spec(config.data), split="train")
    if limit and len(dataset) > limit:
        dataset = torch.utils.data.Subset(dataset, range(limit))
    gt = dataset.dataset.gt_boxes[:limit] if isinstance(dataset, torch.utils.data.Subset) \
        else dataset.gt_boxes
    gt = gt.float()
    whole = float(paired_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(gt), gt).mean())
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in candidates}
    boxes_at: dict[str, torch.Tensor] = {}
    mean, std = config.normalisation()
    if random_init:
        by_epoch[0] = by_epoch[chosen[0]]
        chosen = [0, *chosen]
    for epoch in chosen:
        method, _ = load_snapshot(by_epoch[epoch], random_init=epoch == 0)
        for name, (kind, options) in candidates.items():
            localizer = create_localizer(kind, **options)
            localizer.attach(method.projector)
            started = time.perf_counter()
            result = localize_dataset(method.backbone, dataset, config.resolved_image_size(),
                                      batch_size=256, mean=mean, std=std, progress=False,
                                      localizer=localizer)
            numbers = score(result.boxes, result.degenerate, gt)
            numbers["seconds"] = time.perf_counter() - started
            results[name][epoch] = numbers
            boxes_at[name] = result.boxes
        print(f"{folder.name} epoch {epoch}: " + ", ".join(
            f"{n.split(' (')[0][:18]} {results[n][epoch]['iou']:.2f}" for n in candidates),
            flush=True)
    return {"run": folder, "config": config, "epochs": chosen, "results": results,
            "whole": whole, "last_boxes": boxes_at, "gt": gt, "dataset": dataset}


def picture(study: dict[str, Any], path: Path, count: int = 8, tile: int = 64) -> None:
    """One row per candidate: the same images with its box (red) and the ground truth
    (white), at the last snapshot of ``study``'s run."""
    names = list(study["results"])
    label_w, gap, header = 250, 3, 18
    width = label_w + count * (tile + gap)
    canvas = Image.new("RGB", (width, header + len(names) * (tile + gap)), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), f"{study['run'].name}, epoch {study['epochs'][-1]}: candidate red, "
              "ground truth white", fill=(20, 20, 20))
    images = [study["dataset"][i][0].convert("RGB").resize((tile, tile), Image.NEAREST)
              for i in range(count)]
    for row, name in enumerate(names):
        y = header + row * (tile + gap)
        iou = study["results"][name][study["epochs"][-1]]["iou"]
        draw.text((4, y + tile // 2 - 6), f"{name} ({iou:.2f})", fill=(20, 20, 20))
        for i, image in enumerate(images):
            x = label_w + i * (tile + gap)
            canvas.paste(image, (x, y))
            for box, color, width_px in ((study["gt"][i], (255, 255, 255), 2),
                                         (study["last_boxes"][name][i], (235, 30, 30), 2)):
                x0, y0, x1, y1 = (box * tile).tolist()
                draw.rectangle((x + x0, y + y0, x + x1 - 1, y + y1 - 1), outline=color,
                               width=width_px)
    canvas.save(path)


def report(studies: list[dict[str, Any]], pictures: list[Path]) -> str:
    """The Markdown report: per run a candidate x epoch IoU table and the last epoch's
    coverage/area; then the ranking by mean IoU over every run and epoch."""
    lines = [f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} torch thread(s); "
             f"{time.strftime('%Y-%m-%d')}. Training split, ground-truth boxes of "
             "the generated dataset.", ""]
    for study in studies:
        epochs, results = study["epochs"], study["results"]
        lines += [f"### {study['run'].name}: `{study['config'].data}`, "
                  f"{study['config'].crop}, {study['config'].epochs} epochs", "",
                  f"Mean IoU per snapshot epoch (whole image: {study['whole']:.3f}).", "",
                  "| candidate | " + " | ".join(f"ep {e}" for e in epochs) + " | coverage | "
                  "area / object | boxless | s per pass |",
                  "|---|" + "---:|" * (len(epochs) + 4)]
        for name, per_epoch in results.items():
            last = per_epoch[epochs[-1]]
            seconds = statistics.mean(v["seconds"] for v in per_epoch.values())
            lines.append(f"| {name} | " + " | ".join(f"{per_epoch[e]['iou']:.3f}" for e in epochs)
                         + f" | {last['coverage']:.2f} | {last['area_ratio']:.1f} | "
                         f"{last['boxless']:.2f} | {seconds:.2f} |")
        lines.append("")
    ranking = sorted(studies[0]["results"], key=lambda n: -statistics.mean(
        v["iou"] for s in studies for v in s["results"][n].values()))
    lines += ["### Ranking: mean IoU over every run and snapshot", "",
              "| candidate | mean IoU | worst run-epoch | first-epoch mean |",
              "|---|---:|---:|---:|"]
    for name in ranking:
        values = [v["iou"] for s in studies for v in s["results"][name].values()]
        first = [s["results"][name][s["epochs"][0]]["iou"] for s in studies]
        lines.append(f"| {name} | {statistics.mean(values):.3f} | {min(values):.3f} | "
                     f"{statistics.mean(first):.3f} |")
    lines += [""] + [f"![{p.stem}]({p.name})" for p in pictures] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with snapshots")
    parser.add_argument("--epochs", nargs="+", type=int, default=None,
                        help="snapshot epochs to score (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None,
                        metavar="NAME", help="score only these candidates (default: all): "
                        + "; ".join(f"'{name}'" for name in CANDIDATES).replace("%", "%%"))
    parser.add_argument("--random-init", action="store_true",
                        help="also score the random-init network (as epoch 0)")
    parser.add_argument("--out", type=Path, default=Path("docs/localization_study.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    chosen = None if args.candidates is None else {n: CANDIDATES[n] for n in args.candidates}
    studies = [study_run(folder, args.epochs, args.limit, chosen, args.random_init)
               for folder in args.runs]
    picture_path = args.out.with_suffix(".png")
    pictures = [picture_path.with_name(f"{picture_path.stem}-{s['run'].name}.png")
                for s in studies]
    for study, path in zip(studies, pictures, strict=True):
        picture(study, path)
    text = report(studies, pictures)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
