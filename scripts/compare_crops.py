"""Compare crop modes (issues 8 and 14): the downstream test of the box localizers.

Arms (``CROP_MODES``), all with identical seeds and budgets:

* ``rcrop``: RandomResizedCrop, the baseline every other arm is paired with (same seed);
* ``ccrop-paper``: ContrastiveCrop with the model's boxes from the ``paper`` localizer
  (the official rule);
* ``ccrop``: ContrastiveCrop with the model's boxes from the localizer under test
  (``--localizer``, ``--localizer-kwargs``; default: the project default,
  ``TrainConfig().localizer``);
* ``ccrop-harvest``: ContrastiveCrop with boxes harvested from the training forward's
  maps (``--localizer harvest``: no box pass);
* ``ccrop-gt``: ContrastiveCrop with the ground-truth boxes, the oracle: the gain a
  perfect localizer would give;
* ``simccrop`` (behind ``--modes``): the fixed centre box of SimCCrop.

The data is the built-in synthetic dataset with small off-centre objects on one shared
cluttered background (``DEFAULT_DATA``; why that setting: docs/synthetic.md,
"Self-supervised learnability").

For every method x crop mode x seed it pretrains (``timm_ccrop.train``), then evaluates the
exported backbone with kNN and the fast linear probe (``timm_ccrop.evaluation``). A randomly
initialised network of the same architecture is evaluated too (one per seed), so the reader
sees whether the rcrop baseline learned anything at all. From the same runs it also reports

* false positives: the share of sampled positive view pairs in which at least one view
  covers less than ``--fp-threshold`` of the ground-truth object box (coverage =
  area(view ∩ gt box) / area(gt box)); views are sampled with
  ``contrastive_crop_params`` and each run's final boxes (boxes.csv), no training needed;
* box quality: mean IoU of the model boxes with the ground truth after each box pass, next
  to the IoU of the whole-image box (metrics.jsonl);
* overhead: box-pass seconds as a share of the training time (metrics.jsonl).

For every arm it reports, against rcrop with paired seeds, the mean ± std of the paired
differences (kNN and linear), their 95% confidence interval (Student t, n - 1 degrees of
freedom) and, for the localizer arms, the share of the oracle's paired gain they capture,
mean(arm - rcrop) / mean(oracle - rcrop), with a 95% paired-bootstrap interval over seeds.

Writes a Markdown report (``--out``, default docs/results.md) and a PNG bar plot next to it
(drawn with PIL, one dot per seed per arm). Default grid: SimCLR x 4 arms (rcrop,
ccrop-paper, ccrop, ccrop-gt) x seeds 0-5 (the 6 seeds of docs/results-6seeds.md) with
``resnet_mini_cifar``, 24 epochs of 2500 images, ``--augment-on device``, two cells at a
time with one torch thread each: about 80 min of training in all (docs/results-6seeds.md),
so roughly 45-60 min of wall time on a 2-core CPU. Every cell is stored in its run folder
(``cell.json``), so a rerun with the same settings only computes what is missing. A
``ccrop`` arm with another ``--localizer`` (or options), another ``--alpha`` or
``--box-warmup-epochs`` trains cells in folders of their own (the 'ccrop' arm's folder
always names its localizer: ``simclr-ccrop-peak-background-median-seed0``,
``simclr-ccrop-peak-background-median-a0.1-seed0``) and reuses the rcrop cells, so no
finished cell is ever overwritten by a variant::

    python scripts/compare_crops.py                                  # the default grid
    python scripts/compare_crops.py --localizer component --localizer-kwargs "{rule: max}"
    python scripts/compare_crops.py --epochs 2 --seeds 0 --smoke-label  # smoke run
    python scripts/compare_crops.py --methods simclr moco byol simsiam  # all four methods
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

CROP_MODES = {
    # name: (crop, box_source)
    "rcrop": ("rcrop", "model"),
    "ccrop-paper": ("ccrop", "model"),
    "ccrop": ("ccrop", "model"),
    "ccrop-harvest": ("ccrop", "model"),
    "ccrop-gt": ("ccrop", "ground-truth"),
    "simccrop": ("simccrop", "model"),
}
DEFAULT_MODES = ["rcrop", "ccrop-paper", "ccrop", "ccrop-harvest", "ccrop-gt"]
DEFAULT_SEEDS = [0, 1, 2, 3, 4, 5]  # the 6 seeds of docs/results-6seeds.md
BASELINE = "rcrop"
ORACLE = "ccrop-gt"
# The arms whose boxes come from a localizer run on the model (boxes.csv, box IoU per pass,
# box-pass overhead); 'ccrop-paper' always uses the 'paper' localizer, 'ccrop' --localizer,
# 'ccrop-harvest' the 'harvest' localizer.
MODEL_BOX_MODES = ("ccrop-paper", "ccrop", "ccrop-harvest")
PAPER_LOCALIZER = "paper"
HARVEST_LOCALIZER = "harvest"  # boxes from the maps of the training forward (no box pass)
BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0
# Small objects pushed towards the borders ("small off-centre" in docs/synthetic.md), on one
# cluttered background shared by every image, with a colour per class: the only setting of
# those tried (docs/synthetic.md) in which SimCLR with random crops learned anything here.
DEFAULT_DATA = ("synthetic:num_samples=2500,image_size=32,object_scale=0.2:0.35,"
                "center_bias=-0.5,backgrounds=1,class_colours=1")
DEFAULT_ALPHA = 0.6  # the paper's ImageNet value; the official CIFAR configs use 0.1
VIEW_SCALE = (0.2, 1.0)  # the cifar view preset's RandomResizedCrop area range (reported)


# --------------------------------------------------------------------------- data spec


# --------------------------------------------------------------------------- false positives


def read_boxes_csv(path: Path, count: int) -> list[Any]:
    """Crop boxes of a run's final box table; invalid rows (and a missing file) -> None."""
    from timm_ccrop.crop.boxes import validate_box

    boxes: list[Any] = [None] * count
    if not path.exists():
        return boxes
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["valid"]):
                boxes[int(row["index"])] = validate_box(
                    [float(row[k]) for k in ("x0", "y0", "x1", "y1")])
    return boxes


def crop_boxes(mode: str, run: Path | None, gt: torch.Tensor) -> list[Any]:
    from timm_ccrop.crop.boxes import validate_box
    from timm_ccrop.crop.transforms import SIMCCROP_BOX

    n = len(gt)
    if mode == "rcrop":
        return [None] * n
    if mode == "simccrop":
        return [SIMCCROP_BOX] * n
    if mode == "ccrop-gt":
        return [validate_box(row) for row in gt.tolist()]
    assert mode in MODEL_BOX_MODES and run is not None, mode
    return read_boxes_csv(run / "boxes.csv", n)


# --------------------------------------------------------------------------- runs


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(backbone: str, data: str, output: Path, seed: int, workers: int
             ) -> dict[str, float]:
    from timm_ccrop.evaluation import EvalConfig, run_evaluation

    report = run_evaluation(EvalConfig(backbone=backbone, data=data, protocol="both",
                                       linear_mode="fast", output=str(output), seed=seed,
                                       num_workers=workers, progress=False))
    return {"knn": report["knn"]["test"]["top1"], "linear": report["linear"]["test"]["top1"]}


def run_cell(args: argparse.Namespace, method: str, mode: str, seed: int, data: str,
             root: Path) -> dict[str, Any]:
    from timm_ccrop.config import TrainConfig
    from timm_ccrop.train import train

    crop, box_source = CROP_MODES[mode]
    folder = cell_folder(args, root, method, mode, seed)
    localizer = localizer_for(args, mode)
    extra = {} if localizer is None else {"localizer": localizer[0],
                                          "localizer_kwargs": dict(localizer[1])}
    config = TrainConfig(
        data=data, model=args.model, method=method, crop=crop, box_source=box_source,
        alpha=args.alpha, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_warmup_epochs=args.lr_warmup_epochs, warmup_epochs=args.box_warmup_epochs,
        augment_on=args.augment_on, knn_every=0, pictures=0, progress=False,
        output=str(folder), seed=seed, num_workers=args.workers, image_size=args.image_size,
        snapshots="passes",  # the weights at every box pass, for localization studies
        **extra,
    )
    started = time.perf_counter()
    result = train(config, overwrite=True)  # a cell reruns only when its result is stale
    if result.stopped:  # a stop signal: never evaluate or record a half-trained cell
        raise SystemExit(f"cell {folder.name} stopped by {result.signal or result.stopped} "
                         "before its last epoch; it is not recorded (rerun the grid)")
    train_wall = time.perf_counter() - started
    metrics = read_metrics(result.metrics)
    accuracy = evaluate(str(folder), data, folder / "eval.json", seed, args.workers)
    epoch_seconds = sum(m.get("epoch_seconds", 0.0) for m in metrics)
    box_seconds = sum(m.get("box_pass_seconds", 0.0) for m in metrics)
    return {
        "method": method, "mode": mode, "seed": seed, "run": str(folder), **accuracy,
        "train_wall_s": train_wall, "epoch_seconds": epoch_seconds,
        "box_pass_seconds": box_seconds,
        "box_passes": [
            {"epoch": m["epoch"], "box_mean_iou": m["box_mean_iou"],
             "whole_image_mean_iou": m.get("whole_image_mean_iou")}
            for m in metrics if "box_mean_iou" in m
        ],
    }


def localizer_for(args: argparse.Namespace, mode: str) -> tuple[str, dict[str, Any]] | None:
    """The localizer (name, options) of a model-box arm, None for the other arms."""
    if mode == "ccrop-paper":
        return PAPER_LOCALIZER, {}
    if mode == "ccrop-harvest":
        return HARVEST_LOCALIZER, {}
    if mode == "ccrop":
        return args.localizer, dict(args.localizer_kwargs)
    return None


def describe_localizer(args: argparse.Namespace, mode: str) -> str | None:
    """``name(options)`` of an arm's localizer (``create_localizer(...).describe()``)."""
    from timm_ccrop.localize import create_localizer

    localizer = localizer_for(args, mode)
    return None if localizer is None else create_localizer(localizer[0],
                                                           **localizer[1]).describe()


def fp_rate_for(cell: dict[str, Any], gt: torch.Tensor, image_size: int,
                args: argparse.Namespace) -> float:
    """False-positive rate of the views one cell's crop mode samples (its final boxes)."""
    from timm_ccrop.crop.pair_quality import false_positive_pair_rate

    boxes = crop_boxes(cell["mode"], Path(cell["run"]), gt)
    return false_positive_pair_rate(boxes, gt, image_size, args.alpha, args.fp_pairs,
                                    cell["seed"], args.fp_threshold)


# --------------------------------------------------------------------------- report


def mean_std(values: Sequence[float], signed: bool = False) -> str:
    """``mean ± std`` (sample std) of the finite values, ``(n=1)`` for one, ``n/a`` for none."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    number = "{:+.2f}" if signed else "{:.2f}"
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{number.format(values[0])} (n=1)"
    return f"{number.format(statistics.mean(values))} ± {statistics.stdev(values):.2f}"


def paired_differences(cells: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]]
                       ) -> dict[str, list[float]]:
    """Per-seed accuracy differences ``cell - baseline`` for the seeds both have."""
    by_seed = {c["seed"]: c for c in baseline}
    pairs = [(c, by_seed[c["seed"]]) for c in cells if c["seed"] in by_seed]
    return {key: [c[key] - b[key] for c, b in pairs] for key in ("knn", "linear")}


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.mean(values) if values else float("nan")


def _std(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _clean(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) of Student's t with ``df`` (a positive integer) degrees of freedom.

    Exact closed forms for integer df (Abramowitz & Stegun 26.7.3 and 26.7.4): with
    theta = atan(t / sqrt(df)), A = P(|T| <= |t|) is a finite series in cos(theta).
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    df = int(df)
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/pi) (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 0.0
        if df > 1:
            total = 1.0
            for k in range(1, (df - 3) // 2 + 1):
                term *= 2 * k / (2 * k + 1) * cos2
                total += term
        inside = (2 / math.pi) * (theta + math.sin(theta) * math.cos(theta) * total)
    else:  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        inside = math.sin(theta) * total
    return 0.5 + 0.5 * inside if t >= 0 else 0.5 - 0.5 * inside


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on
    :func:`t_cdf`; t_quantile(0.975, 5) = 2.5706)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """``level`` confidence interval of the mean (Student t, n - 1 degrees of freedom), or
    None for fewer than two finite values."""
    values = _clean(values)
    if len(values) < 2:
        return None
    mean = statistics.mean(values)
    half = t_quantile(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) \
        / math.sqrt(len(values))
    return mean - half, mean + half


def format_interval(interval: tuple[float, float] | None, signed: bool = True) -> str:
    if interval is None:
        return "n/a"
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"[{number.format(interval[0])}, {number.format(interval[1])}]"


def bootstrap_share(arm: Sequence[float], oracle: Sequence[float],
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    level: float = 0.95) -> tuple[float, float, float] | None:
    """Share of the oracle's gain an arm captures, with a paired-bootstrap interval.

    ``arm[i]`` and ``oracle[i]`` are the paired differences from rcrop of the same seed.
    Returns (mean(arm) / mean(oracle), low, high), the interval being the percentile
    interval of the ratio over ``resamples`` resamplings of the seeds (with replacement,
    the same seeds for both arms; ``random.Random(seed)``, so reproducible). Returns None
    when the share is not meaningful: fewer than two seeds, or the oracle's own gain is
    not significant (its Student-t ``level`` interval includes 0).
    """
    if len(arm) != len(oracle):
        raise ValueError(f"arm and oracle need one value per seed each, got {len(arm)} "
                         f"and {len(oracle)}")
    interval = t_interval(oracle, level)
    if interval is None or interval[0] <= 0.0 <= interval[1]:
        return None
    n = len(arm)
    share = statistics.mean(arm) / statistics.mean(oracle)
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        picks = rng.choices(range(n), k=n)
        denominator = sum(oracle[i] for i in picks)
        if denominator != 0.0:  # a resample with no oracle gain has no share
            ratios.append(sum(arm[i] for i in picks) / denominator)
    if len(ratios) < 2:
        return None
    ratios.sort()
    tail = (1.0 - level) / 2

    def percentile(q: float) -> float:
        position = q * (len(ratios) - 1)
        below = math.floor(position)
        above = min(below + 1, len(ratios) - 1)
        return ratios[below] + (ratios[above] - ratios[below]) * (position - below)

    return share, percentile(tail), percentile(1.0 - tail)


def deltas_by_seed(cells: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]],
                   key: str) -> dict[int, float]:
    """seed -> ``cell[key] - baseline[key]`` for the seeds both have."""
    by_seed = {c["seed"]: c for c in baseline}
    return {c["seed"]: c[key] - by_seed[c["seed"]][key] for c in cells if c["seed"] in by_seed}


def machine_description() -> str:
    """The machine a report is written on: processor, core count, OS, Python and torch."""
    processor = platform.processor() or platform.machine() or "unknown processor"
    return (f"{processor} ({platform.machine()}), {os.cpu_count()} cores, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def reproduce_command(argv: Sequence[str], args: argparse.Namespace) -> str:
    """The command line that reproduces a report: ``argv``, with the localizer pinned when
    it came from the (changing) project default."""
    argv = list(argv)
    given = {a.split("=", 1)[0] for a in argv}
    if "--localizer" not in given:
        argv += ["--localizer", args.localizer]
    if "--localizer-kwargs" not in given:
        argv += ["--localizer-kwargs", json.dumps(args.localizer_kwargs, sort_keys=True)]
    return "python scripts/compare_crops.py " + shlex.join(argv)


def draw_plot(path: Path, groups: list[tuple[str, dict[str, list[float]]]],
              title: str) -> None:
    """Bar plot (kNN and linear top-1: mean, ±std whisker, one dot per seed) per group."""
    from PIL import Image, ImageDraw

    bar_w, gap, pad_l, pad_b, top, height = 26, 28, 50, 70, 40, 300
    width = pad_l + len(groups) * (2 * bar_w + gap) + gap
    image = Image.new("RGB", (max(width, 360), top + height + pad_b), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), title, fill="black")
    y0 = top + height
    for tick in range(0, 101, 20):
        y = y0 - tick / 100 * height
        draw.line([(pad_l - 4, y), (image.width - 5, y)], fill=(225, 225, 225))
        draw.text((8, y - 6), f"{tick}%", fill="black")
    colours = {"knn": (70, 120, 200), "linear": (230, 140, 40)}
    x = pad_l + gap
    for name, values in groups:
        for key in ("knn", "linear"):
            m, s = _mean(values[key]), _std(values[key])
            if not math.isnan(m):
                draw.rectangle([x, y0 - m / 100 * height, x + bar_w, y0], fill=colours[key])
                if s:
                    cx = x + bar_w // 2
                    draw.line([(cx, y0 - (m + s) / 100 * height),
                               (cx, y0 - max(0, m - s) / 100 * height)], fill="black")
                for value in values[key]:  # every seed, since the spread is the story
                    y = y0 - value / 100 * height
                    draw.ellipse([x + bar_w // 2 - 2, y - 2, x + bar_w // 2 + 2, y + 2],
                                 outline="black", fill="white")
                draw.text((x, y0 - m / 100 * height - 12), f"{m:.0f}", fill="black")
            x += bar_w
        draw.text((x - 2 * bar_w, y0 + 6), name[:14], fill="black")
        x += gap
    draw.line([(pad_l, y0), (image.width - 5, y0)], fill="black")
    ly = y0 + 30
    for i, (key, colour) in enumerate(colours.items()):
        draw.rectangle([pad_l + i * 90, ly, pad_l + i * 90 + 12, ly + 12], fill=colour)
        draw.text((pad_l + i * 90 + 16, ly), f"{key} top-1", fill="black")
    image.save(path)


def arm_description(args: argparse.Namespace, mode: str) -> str:
    """One line per arm for the report's settings."""
    localizer = describe_localizer(args, mode)
    if mode == "rcrop":
        return "RandomResizedCrop, the baseline"
    if mode == "ccrop-gt":
        return "ContrastiveCrop with the ground-truth boxes: the oracle"
    if mode == "simccrop":
        return "SimCCrop's fixed centre box"
    default = " (the project default)" if mode == "ccrop" and (
        args.localizer, args.localizer_kwargs) == project_default_localizer() else ""
    return f"ContrastiveCrop with the model's boxes, localizer `{localizer}`{default}"


def project_default_localizer() -> tuple[str, dict[str, Any]]:
    """``TrainConfig().localizer`` and its options (never hard-coded: it changes)."""
    from timm_ccrop.config import TrainConfig

    defaults = TrainConfig()
    return defaults.localizer, defaults.resolved_localizer_kwargs()


def draw_box_grid(path: Path, cells: list[dict[str, Any]], train_split: Any,
                  images: int = 8) -> tuple[Path, int, str] | None:
    """The same training images under each boxed arm's final boxes, for the first method
    and seed (``viz.arm_boxes_grid``); ``(path, seed, method)``, or None without such arms."""
    from timm_ccrop.pictures.viz import arm_boxes_grid

    first = cells[0] if cells else None
    chosen = [c for c in cells if first and (c["method"], c["seed"]) == (
        first["method"], first["seed"]) and c["mode"] != BASELINE]
    if not chosen:
        return None
    gt = train_split.gt_boxes.float()
    picks = list(range(0, len(gt), max(1, len(gt) // images)))[:images]
    arms = {c["mode"]: [crop_boxes(c["mode"], Path(c["run"]), gt)[i] for i in picks]
            for c in chosen}
    grid = arm_boxes_grid([train_split[i][0] for i in picks], arms, gt[picks], tile=64,
                          title=f"{first['method']}, seed {first['seed']}: final boxes")
    grid.save(path)
    return path, first["seed"], first["method"]


def write_report(args: argparse.Namespace, cells: list[dict[str, Any]],
                 random_init: list[dict[str, Any]], data: str, command: str,
                 wall: float, train_split: Any) -> tuple[Path, Path]:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    everything = [*cells, *random_init]
    reused = sum(bool(c.get("reused")) for c in everything)
    train_total = sum(c.get("train_wall_s", 0.0) for c in cells)
    png = out.with_suffix(".png")
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        by_cell.setdefault((cell["method"], cell["mode"]), []).append(cell)

    lines = [f"# Crop-mode comparison ({'SMOKE RUN' if args.smoke_label else 'results'})", ""]
    if args.smoke_label:
        lines += [
            "> **Smoke run.** This budget only proves that the pipeline runs end to end. "
            "It says nothing about whether ContrastiveCrop helps: too few epochs, images "
            "and seeds. For the real comparison run the full default grid:",
            ">",
            "> `python scripts/compare_crops.py`  (SimCLR x rcrop, ccrop-paper, ccrop, "
            "ccrop-gt x seeds 0-5, 24 epochs of 2500 images)",
            "",
        ]
    lines += [
        "## Settings", "",
        f"- command (reproduces this report): `{command}`",
        f"- machine: {machine_description()}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- data: `{data}` (built-in `SyntheticObjects`; kNN/linear are fitted on its "
        "train split and scored on its test split of the same size; see "
        "docs/synthetic.md for the options)",
        f"- model `{args.model}`, methods {args.methods}, crop modes {args.modes}, "
        f"seeds {args.seeds}",
        "- arms:",
        *[f"  - `{mode}`: {arm_description(args, mode)}" for mode in args.modes],
        f"- epochs {args.epochs}, batch {args.batch_size}, lr {args.lr} (linear warm-up "
        f"{args.lr_warmup_epochs} epochs), alpha {args.alpha}, box warm-up "
        f"{'20% of training' if args.box_warmup_epochs is None else args.box_warmup_epochs}, "
        f"augment_on `{args.augment_on}`; box interval: the localizer's default (a box "
        "pass every 20% of training; harvest: every epoch)",
        "- evaluation: `run_evaluation(protocol='both', linear_mode='fast')`, top-1 (%) "
        "on the test split; mean ± std over seeds (std of n=1 is not shown)",
        f"- total wall time {wall / 60:.1f} min"
        + (f" ({reused} of {len(everything)} cells, random init included, reused from an "
           "earlier run and not recomputed)" if reused else "")
        + f"; training time of the pretraining cells: {train_total / 60:.1f} min in all",
        "", "## Does the baseline learn at all?", "",
        "| network | kNN top-1 | linear top-1 |", "|---|---|---|",
        f"| random init `{args.model}` | {mean_std([r['knn'] for r in random_init])} | "
        f"{mean_std([r['linear'] for r in random_init])} |",
    ]
    for method in args.methods:
        rc = by_cell.get((method, BASELINE), [])
        if rc:
            lines.append(f"| {method} + rcrop | {mean_std([c['knn'] for c in rc])} | "
                         f"{mean_std([c['linear'] for c in rc])} |")
    lines += ["", "## Accuracy per cell (top-1 %, mean ± std over seeds)", "",
              "| method | crop mode | kNN | linear | seeds |", "|---|---|---|---|---|"]
    for (method, mode), group in by_cell.items():
        lines.append(f"| {method} | {mode} | {mean_std([c['knn'] for c in group])} | "
                     f"{mean_std([c['linear'] for c in group])} | "
                     f"{', '.join(str(c['seed']) for c in group)} |")
    lines += ["", "## Accuracy per seed (top-1 %)", "",
              "| method | crop mode | seed | kNN | linear |", "|---|---|---|---|---|"]
    for (method, mode), group in by_cell.items():
        for cell in sorted(group, key=lambda c: c["seed"]):
            lines.append(f"| {method} | {mode} | {cell['seed']} | {cell['knn']:.2f} | "
                         f"{cell['linear']:.2f} |")
    lines += ["", "## Difference from rcrop (same seed, top-1 points, mean ± std over seeds)",
              "", "Each seed's run minus the rcrop run with the same seed (same data order, "
              "same initialisation), so seed-to-seed spread that both share cancels. "
              "`n` is the number of seed pairs; the 95% interval of the mean difference is "
              "Student t with n - 1 degrees of freedom (n/a for one pair). An interval that "
              "excludes 0 is a difference the seeds resolve.", "",
              "| method | crop mode | Δ kNN | 95% CI kNN | Δ linear | 95% CI linear | n |",
              "|---|---|---|---|---|---|---|"]
    for (method, mode), group in by_cell.items():
        if mode == BASELINE:
            continue
        deltas = paired_differences(group, by_cell.get((method, BASELINE), []))
        lines.append(f"| {method} | {mode} | {mean_std(deltas['knn'], signed=True)} | "
                     f"{format_interval(t_interval(deltas['knn']))} | "
                     f"{mean_std(deltas['linear'], signed=True)} | "
                     f"{format_interval(t_interval(deltas['linear']))} | "
                     f"{len(deltas['knn'])} |")
    lines += [
        "", "## Share of the oracle's gain", "",
        "How much of the oracle's paired gain (ccrop-gt - rcrop) each localizer arm "
        "captures: share = mean(arm - rcrop) / mean(oracle - rcrop) over the seeds all "
        "three share (1 = as good as the ground-truth boxes, 0 = no better than rcrop). "
        f"95% interval: percentile interval of a paired bootstrap over seeds "
        f"({BOOTSTRAP_RESAMPLES} resamples, `random.Random({BOOTSTRAP_SEED})`). "
        "n/a where the oracle's own gain is not resolved (its 95% t interval includes 0, "
        "or fewer than two seeds): then there is no gain to take a share of.", "",
        "| method | crop mode | localizer | share kNN | 95% CI kNN | share linear | "
        "95% CI linear | n |", "|---|---|---|---|---|---|---|---|",
    ]
    any_share = False
    for (method, mode), group in by_cell.items():
        if mode not in MODEL_BOX_MODES:
            continue
        oracle_cells = by_cell.get((method, ORACLE), [])
        base = by_cell.get((method, BASELINE), [])
        if not oracle_cells or not base:
            continue
        any_share = True
        row = [method, mode, f"`{describe_localizer(args, mode)}`"]
        count = 0
        for key in ("knn", "linear"):
            arm_d = deltas_by_seed(group, base, key)
            oracle_d = deltas_by_seed(oracle_cells, base, key)
            seeds = sorted(set(arm_d) & set(oracle_d))
            count = len(seeds)
            result = bootstrap_share([arm_d[s] for s in seeds], [oracle_d[s] for s in seeds])
            if result is None:
                row += ["n/a", "n/a"]
            else:
                row += [f"{result[0]:.2f}", f"[{result[1]:.2f}, {result[2]:.2f}]"]
        lines.append("| " + " | ".join([*row, str(count)]) + " |")
    if not any_share:
        lines.append("| (needs rcrop, ccrop-gt and a model-box arm) | | | | | | | |")
    lines += [
        "", f"![accuracy per crop mode]({png.name})", "",
        f"## False-positive positive pairs (coverage < {args.fp_threshold:.0%})", "",
        f"Share of sampled view pairs ({args.fp_pairs} pairs per training image, "
        "`contrastive_crop_params` with the run's final boxes, cifar view scale "
        f"{VIEW_SCALE}) in which at least one view covers less than {args.fp_threshold:.0%} "
        "of the ground-truth object box (coverage = area(view ∩ gt) / area(gt)). For the "
        f"model-box arms ({', '.join(MODEL_BOX_MODES)}) the boxes are the run's final "
        "`boxes.csv` (invalid boxes fall back to RandomResizedCrop, as in training).", "",
        "| method | crop mode | false-positive rate (%) |", "|---|---|---|",
    ]
    for (method, mode), group in by_cell.items():
        lines.append(f"| {method} | {mode} | "
                     f"{mean_std([100 * c['fp_rate'] for c in group])} |")
    grid = draw_box_grid(out.with_name(f"{out.stem}-boxes.png"), cells, train_split)
    if grid is not None:
        lines += ["", "## Each arm's boxes on the same images", "",
                  f"The final boxes of seed {grid[1]} ({grid[2]}) of every arm that crops "
                  "with boxes (red), with the ground truth (green) and their IoU; images "
                  "evenly spaced through the training split.", "",
                  f"![each arm's boxes]({grid[0].name})"]
    lines += ["", "## Box quality (model boxes vs ground truth, mean IoU)", "",
              "| method | crop mode | seed | epoch | box mean IoU | whole-image mean IoU |",
              "|---|---|---|---|---|---|"]
    any_pass = False
    for cell in cells:
        if cell["mode"] not in MODEL_BOX_MODES:
            continue
        for p in cell["box_passes"]:
            any_pass = True
            whole = p["whole_image_mean_iou"]
            lines.append(f"| {cell['method']} | {cell['mode']} | {cell['seed']} | "
                         f"{p['epoch']} | {p['box_mean_iou']:.3f} | "
                         f"{'n/a' if whole is None else f'{whole:.3f}'} |")
    if not any_pass:
        lines.append("| (no box pass ran) | | | | | |")
    lines += ["", "## Overhead of the box passes", "",
              "| method | crop mode | box-pass s | training s (sum of epochs) | share |",
              "|---|---|---|---|---|"]
    for (method, mode), group in by_cell.items():
        if mode not in MODEL_BOX_MODES:
            continue
        box = _mean([c["box_pass_seconds"] for c in group])
        total = _mean([c["epoch_seconds"] + c["box_pass_seconds"] for c in group])
        lines.append(f"| {method} | {mode} | {box:.1f} | {total:.1f} | "
                     f"{100 * box / total if total else float('nan'):.1f}% |")
    lines += ["", "Training seconds = sum of `epoch_seconds` plus `box_pass_seconds` from "
              "metrics.jsonl (the box pass is timed outside the epoch).", ""]
    out.write_text("\n".join(lines))

    groups = [("random init", {"knn": [r["knn"] for r in random_init],
                               "linear": [r["linear"] for r in random_init]})]
    for (method, mode), group in by_cell.items():
        label = mode if len(args.methods) == 1 else f"{method}/{mode}"
        groups.append((label, {"knn": [c["knn"] for c in group],
                               "linear": [c["linear"] for c in group]}))
    draw_plot(png, groups, f"top-1 (%) on synthetic, {args.epochs} ep, seeds {args.seeds}")
    return out, png


# --------------------------------------------------------------------------- main


def yaml_mapping(text: str) -> dict[str, Any]:
    """``--localizer-kwargs``: a YAML mapping (empty text: no options)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"not YAML: {text!r} ({error})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a YAML mapping such as \"{{rule: max}}\", "
                                         f"got {text!r}")
    return {str(k): v for k, v in value.items()}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from timm_ccrop.config import TrainConfig
    from timm_ccrop.localize import LOCALIZERS, create_localizer

    defaults = TrainConfig()  # the project default localizer: never hard-coded here
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["simclr"])
    p.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=list(CROP_MODES),
                   help="arms: rcrop (the baseline), ccrop-paper (model boxes, 'paper' "
                   "localizer), ccrop (model boxes, --localizer), ccrop-gt (ground-truth "
                   "boxes, the oracle), simccrop")
    p.add_argument("--localizer", default=defaults.localizer, choices=list(LOCALIZERS),
                   help="localizer of the 'ccrop' arm (default: the project default, "
                   "TrainConfig().localizer)")
    p.add_argument("--localizer-kwargs", type=yaml_mapping, default=None,
                   help="options of --localizer as a YAML mapping, e.g. \"{rule: max}\" "
                   "(default: the project default's options for the default localizer, "
                   "none for the others)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="a generated dataset spec, synthetic:... or scenes:... (ground-truth boxes "
                   "are needed)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--model", default="resnet_mini_cifar")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--lr-warmup-epochs", type=float, default=0.0,
                   help="linear lr warm-up in epochs (0.3 with 2 warm-up epochs is the steadier "
                        "protocol of docs/results.md)")
    p.add_argument("--box-warmup-epochs", type=int, default=None,
                   help="epochs of random crops before the first box update (default: the "
                        "project's: 20%% of training)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="Beta(alpha, alpha) of the crop centre of the ccrop arms; a value "
                        "other than the default trains cells of their own (folder suffix "
                        "'-a<alpha>') and reuses the rcrop cells")
    p.add_argument("--augment-on", default="device", choices=["loader", "device"])
    p.add_argument("--workers", type=int, default=0,
                   help="data-loader workers per cell (0: load in the training process)")
    p.add_argument("--jobs", type=int, default=2,
                   help="cells trained at once, each in its own process (1: in this process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell process")
    p.add_argument("--fp-threshold", type=float, default=0.2,
                   help="a view covering less than this fraction of the gt box is 'bad'")
    p.add_argument("--fp-pairs", type=int, default=4, help="view pairs sampled per image")
    p.add_argument("--runs", default="runs/compare_crops", help="folder for the runs")
    p.add_argument("--out", default="docs/results.md", help="report; the PNG goes next to it")
    p.add_argument("--smoke-label", action="store_true",
                   help="label the report as a smoke run that proves nothing")
    p.add_argument("--cell", nargs=3, metavar=("METHOD", "MODE", "SEED"),
                   help=argparse.SUPPRESS)  # internal: run one cell (a --jobs child)
    args = p.parse_args(argv)
    for name in ("jobs", "threads", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.localizer_kwargs is None:
        args.localizer_kwargs = TrainConfig(localizer=args.localizer).resolved_localizer_kwargs()
    try:
        create_localizer(args.localizer, **args.localizer_kwargs)
    except (TypeError, ValueError) as error:
        p.error(f"--localizer {args.localizer} --localizer-kwargs "
                f"{json.dumps(args.localizer_kwargs)}: {error}")
    from timm_ccrop.data import GENERATORS, parse_data_spec

    try:
        kind = parse_data_spec(args.data).kind
    except ValueError as error:
        p.error(str(error))
    if kind not in GENERATORS:
        p.error(f"--data must be a generated spec ({', '.join(GENERATORS)}: the report needs "
                f"ground-truth boxes), got {args.data!r}; e.g. {DEFAULT_DATA!r}")
    return args


RANDOM_INIT = "random-init"


def cell_signature(args: argparse.Namespace, data: str, mode: str) -> dict[str, Any]:
    """What a finished cell of ``mode`` must match to be reused by a rerun (resume).

    The localizer (name and options) belongs to the signature of the model-box arms only;
    the folder of a variant (:func:`arm_variant`) keeps its cells apart.
    """
    signature: dict[str, Any] = {
        "data": data, "model": args.model, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "alpha": args.alpha,
        **({"lr_warmup_epochs": args.lr_warmup_epochs} if args.lr_warmup_epochs else {}),
        **({"box_warmup_epochs": args.box_warmup_epochs}
           if args.box_warmup_epochs is not None else {}),
        "augment_on": args.augment_on, "image_size": args.image_size}
    localizer = localizer_for(args, mode)
    if localizer is not None:
        # through JSON, so it compares equal to what cell.json gives back
        signature["localizer"] = json.loads(json.dumps(
            {"name": localizer[0], "kwargs": localizer[1]}))
    return signature


# Settings a random-crop run never reads: its cells are reused across them.
IGNORED_BY_BASELINE = ("alpha", "box_warmup_epochs")


def arm_variant(args: argparse.Namespace, mode: str) -> str:
    """Folder suffix of a ContrastiveCrop arm: the localizer of the 'ccrop' arm (name and
    options, always), a non-default alpha or box warm-up ('' for rcrop). Variant grids share
    one runs folder (and its rcrop cells) without overwriting each other's cells."""
    if mode in (BASELINE, RANDOM_INIT):
        return ""
    parts = []
    localizer = localizer_for(args, mode)
    if mode == "ccrop":  # always named: the project default changes over time
        words = [localizer[0], *(word for item in sorted(localizer[1].items())
                                 for word in item)]
        parts.append("".join("-" + re.sub(r"[^A-Za-z0-9.]+", "_", str(word))
                             for word in words))
    if args.alpha != DEFAULT_ALPHA:
        parts.append(f"-a{args.alpha:g}")
    if args.box_warmup_epochs is not None:
        parts.append(f"-w{args.box_warmup_epochs}")
    return "".join(parts)


def cell_folder(args: argparse.Namespace, root: Path, method: str, mode: str, seed: int
                ) -> Path:
    return root / (f"{RANDOM_INIT}-seed{seed}" if mode == RANDOM_INIT
                   else f"{method}-{mode}{arm_variant(args, mode)}-seed{seed}")


def compute_cell(args: argparse.Namespace, method: str, mode: str, seed: int, data: str,
                 root: Path) -> dict[str, Any]:
    """Train and evaluate one cell (or evaluate the random init), and store cell.json."""
    folder = cell_folder(args, root, method, mode, seed)
    if mode == RANDOM_INIT:
        cell = {"method": method, "mode": mode, "seed": seed, "run": str(folder),
                **evaluate(args.model, data, folder / "eval.json", seed, args.workers)}
    else:
        cell = run_cell(args, method, mode, seed, data, root)
    cell["localizer"] = None if mode == RANDOM_INIT else describe_localizer(args, mode)
    cell["signature"] = cell_signature(args, data, mode)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "cell.json.tmp"
    tmp.write_text(json.dumps(cell, indent=1))
    tmp.replace(folder / "cell.json")
    return cell


def finished_cell(folder: Path, signature: dict[str, Any], mode: str
                  ) -> dict[str, Any] | None:
    """The stored result of a cell run with the same settings, else None."""
    try:
        cell = json.loads((folder / "cell.json").read_text())
    except (OSError, ValueError):
        return None
    ignored = IGNORED_BY_BASELINE if mode == BASELINE else ()

    def relevant(settings: Any) -> Any:
        if not isinstance(settings, dict):
            return settings
        return {key: value for key, value in settings.items() if key not in ignored}

    return cell if relevant(cell.get("signature")) == relevant(signature) else None


def run_cells(args: argparse.Namespace, argv: Sequence[str], tasks: list[tuple[str, str, int]],
              data: str, root: Path) -> list[dict[str, Any]]:
    """Run every (method, mode, seed) task, ``args.jobs`` at a time.

    With one job the cells run in this process. With more, each cell is a child process
    of this script (``--cell``) limited to ``args.threads`` torch threads: on a small CPU,
    two one-thread trainings get through more images per second than one two-thread
    training. Cells already finished with the same settings are reused, so a rerun of
    an interrupted grid only computes the missing cells.
    """
    from concurrent.futures import ThreadPoolExecutor

    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    todo = []
    for task in tasks:
        cell = finished_cell(cell_folder(args, root, *task), cell_signature(args, data, task[1]),
                             task[1])
        if cell is None:
            todo.append(task)
        else:
            results[task] = dict(cell, reused=True)
            print(f"[{' '.join(map(str, task))}] reused {cell['run']}", flush=True)

    def child(task: tuple[str, str, int]) -> dict[str, Any]:
        method, mode, seed = task
        folder = cell_folder(args, root, method, mode, seed)
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), *argv,
                   "--cell", method, mode, str(seed)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        with open(folder / "log.txt", "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode
        cell = finished_cell(folder, cell_signature(args, data, mode), mode)
        if code != 0 or cell is None:
            raise RuntimeError(f"cell {task} failed (exit code {code}); see {folder / 'log.txt'}")
        return cell

    def report(task: tuple[str, str, int], cell: dict[str, Any]) -> None:
        extra = f" train {cell['train_wall_s']:.0f}s" if "train_wall_s" in cell else ""
        print(f"[{' '.join(map(str, task))}] kNN {cell['knn']:.2f} linear {cell['linear']:.2f}"
              f"{extra}", flush=True)

    if args.jobs == 1:
        for task in todo:
            results[task] = compute_cell(args, *task, data, root)
            report(task, results[task])
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {task: pool.submit(child, task) for task in todo}
            for task, future in futures.items():
                results[task] = future.result()
                report(task, results[task])
    return [results[task] for task in tasks]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    data = args.data
    root = Path(args.runs)
    if args.cell:
        torch.set_num_threads(args.threads)
        method, mode, seed = args.cell
        return compute_cell(args, method, mode, int(seed), data, root)
    command = reproduce_command(argv, args)
    started = time.perf_counter()
    from timm_ccrop.data import build_dataset, parse_data_spec

    train_split = build_dataset(parse_data_spec(data), split="train")
    gt = train_split.gt_boxes.float()
    tasks = [("none", RANDOM_INIT, seed) for seed in args.seeds]
    tasks += [(method, mode, seed) for method in args.methods for mode in args.modes
              for seed in args.seeds]
    done = run_cells(args, argv, tasks, data, root)
    random_init = [cell for cell in done if cell["mode"] == RANDOM_INIT]
    cells = [cell for cell in done if cell["mode"] != RANDOM_INIT]
    for cell in cells:
        cell["fp_rate"] = fp_rate_for(cell, gt, train_split.image_size, args)
    wall = time.perf_counter() - started
    out, png = write_report(args, cells, random_init, data, command, wall, train_split)
    (root / f"{Path(args.out).stem}.json").write_text(json.dumps(
        {"cells": cells, "random_init": random_init, "data": data}, indent=1))
    print(f"\nreport: {out}\nplot: {png}\nwall: {wall / 60:.1f} min")
    print(out.read_text())
    return {"cells": cells, "random_init": random_init, "report": out, "plot": png}


if __name__ == "__main__":
    main()
