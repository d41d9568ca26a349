#!/usr/bin/env python
"""Which channel reduction and threshold give good ContrastiveCrop boxes, per timm family?

For each configuration ``model@size`` (a timm model name and a square image size):

1. render ``SyntheticObjects`` train/test splits at ``size`` (ground-truth boxes known);
2. build ``timm.create_model(model, num_classes=10)`` (ViTs with ``dynamic_img_size=True``)
   and measure the *untrained* (random init) model's boxes;
3. train it WITH the labels (cross-entropy, AdamW, cosine schedule over a wall-clock budget,
   light flip + pad-and-crop augmentation) -- supervised training stands in for the SSL
   training that ContrastiveCrop runs inside;
4. on the held-out test split, for every stage in ``--stages``, capture the stage's feature
   map once (``FeatureHook``, as ``localize_dataset`` does), reduce it once per reduction
   ('sum', 'relu-sum', 'l2') and call ``heatmap_boxes`` per threshold; report mean IoU with
   ground truth and mean box area, next to the whole-image box's IoU.

Prints markdown tables (a summary, then the full reduction x threshold grids) and the best
(reduction, threshold) per configuration; ``--out`` also writes them to a file.

    python scripts/family_defaults_study.py                       # ~13 min on a 2-core CPU
    python scripts/family_defaults_study.py --configs test_resnet@64 --budget 30   # quick look
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field

import timm
import torch
import torch.nn.functional as F

from timm_ccrop.crop.boxes import box_area, paired_iou
from timm_ccrop.data.synthetic import SyntheticObjects
from timm_ccrop.localize import (
    REDUCTIONS,
    FeatureHook,
    heatmap_boxes,
    localization_defaults,
    reduce_channels,
    resolve_stage,
)

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_CONFIGS = (
    "test_resnet@64",
    "test_convnext@64",
    "test_efficientnet@64",
    "regnetx_002@64",
    "test_vit@64",
    "test_vit@128",
    "test_resnet@128",
)
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the eval transform's input (ToTensor + ImageNet Normalize)."""
    return (images_uint8.float() / 255.0 - _MEAN) / _STD


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation on a normalised batch: horizontal flip, reflect-pad-and-crop."""
    count, _, height, width = images.shape
    flip = torch.rand(count, generator=generator) < 0.5
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    pad = max(1, height // 8)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    )


def parse_config(config: str) -> tuple[str, int, dict]:
    """``name@size[:key=value,...]`` -> (model name, image size, extra create_model kwargs)."""
    head, _, extra = config.partition(":")
    name, _, size = head.partition("@")
    kwargs = {}
    for item in filter(None, extra.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = ast.literal_eval(value)
    return name, int(size or 64), kwargs


def build(name: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    if "vit" in name:
        kwargs.setdefault("dynamic_img_size", True)
    return timm.create_model(name, num_classes=10, **kwargs)


def train(model, images, targets, budget, max_steps, batch_size, lr, seed):
    """Supervised training for ``budget`` seconds (or ``max_steps``); returns steps done."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    model.train()
    start = time.perf_counter()
    step = 0
    warmup = 10
    while step < max_steps:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
        progress = max(elapsed / budget, step / max_steps)
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        batch = augment(images[index], generator)
        loss = F.cross_entropy(model(batch), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    return step, time.perf_counter() - start


@torch.no_grad()
def accuracy(model, images, targets, batch_size=256) -> float:
    model.eval()
    correct = 0
    for lo in range(0, len(images), batch_size):
        logits = model(images[lo : lo + batch_size])
        correct += int((logits.argmax(1) == targets[lo : lo + batch_size]).sum())
    return correct / len(images)


@torch.no_grad()
def stage_maps(model, images, stage, batch_size=256) -> torch.Tensor:
    """The stage's NCHW feature maps of all images (eval mode), captured once."""
    model.eval()
    chunks = []
    with FeatureHook(model, stage) as hook:
        for lo in range(0, len(images), batch_size):
            model(images[lo : lo + batch_size])
            chunks.append(hook.feature_map.float())
    return torch.cat(chunks)


def coverage(boxes: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Share of each ground-truth box inside the predicted box (recall of the object)."""
    width = (torch.minimum(boxes[:, 2], gt[:, 2]) - torch.maximum(boxes[:, 0], gt[:, 0]))
    height = (torch.minimum(boxes[:, 3], gt[:, 3]) - torch.maximum(boxes[:, 1], gt[:, 1]))
    inter = width.clamp_min(0) * height.clamp_min(0)
    return inter / box_area(gt).clamp_min(1e-12)


def grid(features, gt, out_size) -> dict[tuple[str, float], tuple[float, float, float, float]]:
    """(reduction, threshold) -> (mean IoU, mean box area, degenerate share, GT coverage)."""
    results = {}
    for reduction in REDUCTIONS:
        maps = reduce_channels(features, reduction)  # once per reduction
        for threshold in THRESHOLDS:
            boxes, bad = heatmap_boxes(maps, threshold, out_size, return_degenerate=True)
            results[reduction, threshold] = (
                float(paired_iou(boxes, gt).mean()),
                float(box_area(boxes).mean()),
                float(bad.float().mean()),
                float(coverage(boxes, gt).mean()),
            )
    return results


def best(results):
    key = max(results, key=lambda k: results[k][0])
    return key, results[key]


@dataclass
class Row:
    config: str
    stage: int
    map_size: str
    accuracy: float
    untrained_accuracy: float
    steps: int
    seconds: float
    whole_iou: float
    trained: dict = field(default_factory=dict)
    untrained: dict = field(default_factory=dict)


def run_config(config, data, args) -> list[Row]:
    name, size, kwargs = parse_config(config)
    train_images, train_targets, test_images, test_targets, gt = data[size]
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(gt)
    whole_iou = float(paired_iou(whole, gt).mean())
    model = build(name, args.seed, **kwargs)
    stages = []
    for stage in args.stages:
        try:
            reduction = int(resolve_stage(model, stage)["reduction"])
        except ValueError:
            continue
        stages.append((stage, math.ceil(size / reduction)))
    untrained = {s: grid(stage_maps(model, test_images, s), gt, (size, size)) for s, _ in stages}
    untrained_acc = accuracy(model, test_images, test_targets)
    random.seed(args.seed)
    steps, seconds = train(
        model, train_images, train_targets, args.budget, args.max_steps, args.batch_size,
        args.lr, args.seed,
    )
    acc = accuracy(model, test_images, test_targets)
    rows = []
    for stage, side in stages:
        trained = grid(stage_maps(model, test_images, stage), gt, (size, size))
        rows.append(
            Row(config, stage, f"{side}x{side}", acc, untrained_acc, steps, seconds, whole_iou,
                trained, untrained[stage])
        )
    print(f"# {config}: {steps} steps in {seconds:.0f} s, test acc {acc:.3f}", file=sys.stderr)
    return rows


def fmt_key(key) -> str:
    return f"{key[0]}, {key[1]:g}"


def summary_table(rows: list[Row]) -> str:
    lines = [
        "| config | stage | map | steps (s) | test acc | whole-image IoU | untrained best IoU "
        "(red., k) | paper sum,0.1 IoU | trained best IoU (red., k) | its box area | its GT "
        "coverage |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ukey, (uiou, *_) = best(row.untrained)
        tkey, (tiou, tarea, _, tcover) = best(row.trained)
        paper = row.trained["sum", 0.1][0]
        lines.append(
            f"| {row.config} | {row.stage} | {row.map_size} | {row.steps} ({row.seconds:.0f}) | "
            f"{row.accuracy:.3f} (untrained {row.untrained_accuracy:.2f}) | {row.whole_iou:.3f} | "
            f"{uiou:.3f} ({fmt_key(ukey)}) | {paper:.3f} | **{tiou:.3f}** ({fmt_key(tkey)}) | "
            f"{tarea:.3f} | {tcover:.3f} |"
        )
    return "\n".join(lines)


def grid_table(row: Row) -> str:
    header = "| model | reduction | " + " | ".join(f"k={k:g}" for k in THRESHOLDS) + " |"
    lines = [
        f"**{row.config}, stage {row.stage} ({row.map_size} map)**: mean IoU (mean box area, "
        f"mean GT coverage); whole image {row.whole_iou:.3f}",
        "",
        header,
        "|---" * (len(THRESHOLDS) + 2) + "|",
    ]
    for label, results in (("trained", row.trained), ("untrained", row.untrained)):
        for reduction in REDUCTIONS:
            cells = []
            for threshold in THRESHOLDS:
                iou, area, _, cover = results[reduction, threshold]
                cells.append(f"{iou:.3f} ({area:.2f}, {cover:.2f})")
            lines.append(f"| {label} | {reduction} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_family_best(rows: list[Row]) -> str:
    lines = [
        "| config | stage | best (reduction, k) | IoU | current default | IoU at default |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = parse_config(row.config)[0]
        default = localization_defaults(build(name, 0))
        key, (iou, *_) = best(row.trained)
        at_default = row.trained.get((default.reduction, default.threshold))
        at_default_text = f"{at_default[0]:.3f}" if at_default else "n/a"
        lines.append(
            f"| {row.config} | {row.stage} | {fmt_key(key)} | {iou:.3f} | "
            f"{default.reduction}, {default.threshold:g} | {at_default_text} |"
        )
    return "\n".join(lines)


def load(size, args):
    kwargs = {"image_size": size, "num_classes": 10, "seed": args.seed}
    train_set = SyntheticObjects(args.train_samples, split="train", **kwargs)
    test_set = SyntheticObjects(args.test_samples, split="test", **kwargs)
    return (
        normalise(train_set.images_uint8()),
        torch.tensor(train_set.targets),
        normalise(test_set.images_uint8()),
        torch.tensor(test_set.targets),
        test_set.gt_boxes.clone(),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="model@image_size entries (default: %(default)s)")
    parser.add_argument("--stages", nargs="+", type=int, default=[-1, -2],
                        help="feature stages to localize from (default: -1 -2)")
    parser.add_argument("--budget", type=float, default=100.0,
                        help="training wall-clock seconds per configuration (default 100)")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--test-samples", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (default 1: on a shared 2-core CPU two "
                        "spinning threads ran 10x slower); 0 = torch's default")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    start = time.perf_counter()
    data = {}
    rows: list[Row] = []
    for config in args.configs:
        size = parse_config(config)[1]
        if size not in data:
            data[size] = load(size, args)
        rows.extend(run_config(config, data, args))
    total = time.perf_counter() - start

    command = "python scripts/family_defaults_study.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    machine = (
        f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), timm {timm.__version__}; total {total:.0f} s"
    )
    parts = [
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine}  ",
        f"Data: SyntheticObjects(num_classes=10, seed={args.seed}), {args.train_samples} train "
        f"/ {args.test_samples} held-out test images; budget {args.budget:g} s per config.",
        "",
        "### Summary",
        "",
        summary_table(rows),
        "",
        "### Best (reduction, threshold) per configuration",
        "",
        per_family_best(rows),
        "",
        "### Full grids (held-out split; trained, then the same model at random init)",
        "",
    ]
    for row in rows:
        parts += [grid_table(row), ""]
    text = "\n".join(parts)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
