"""The Markdown report of a comparison: settings, accuracies, paired differences from
rcrop, the share of the oracle's gain, false-positive pairs, box quality and overhead.

The sections are the same for every dataset; a section that needs ground-truth boxes says
so where the data has none, so reports of any two grids read side by side.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

from .arms import BASELINE, MODEL_BOX_ARMS, ORACLE, describe_localizer
from .result import GridResult
from .stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_share,
    deltas_by_seed,
    format_interval,
    mean_or_nan,
    mean_std,
    paired_differences,
    t_interval,
)

__all__ = ["VIEW_SCALE", "arm_description", "machine_description", "report_text"]

VIEW_SCALE = (0.2, 1.0)  # the cifar view preset's RandomResizedCrop area range (reported)
_NO_BOXES = ("n/a: `{data}` has no ground-truth boxes, so {what} cannot be measured; the "
             "accuracies above are the whole answer for this data.")


def machine_description() -> str:
    """The machine a report is written on: processor, core count, OS, Python and torch."""
    processor = platform.processor() or platform.machine() or "unknown processor"
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu = f", {gpus} x {torch.cuda.get_device_name(0)}" if gpus else ", no GPU"
    return (f"{processor} ({platform.machine()}), {os.cpu_count()} cores{gpu}, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def arm_description(grid: GridResult, mode: str) -> str:
    """One line per arm for the report's settings."""
    if mode == BASELINE:
        return "RandomResizedCrop, the baseline"
    if mode == ORACLE:
        return "ContrastiveCrop with the ground-truth boxes: the oracle"
    if mode == "simccrop":
        return "SimCCrop's fixed centre box"
    localizer = describe_localizer(mode, grid.config.resolved_localizer())
    default = type(grid.config)()
    is_default = mode == "ccrop" and grid.config.resolved_localizer() == \
        default.resolved_localizer()
    return (f"ContrastiveCrop with the model's boxes, localizer `{localizer}`"
            f"{' (the project default)' if is_default else ''}")


def _title(grid: GridResult) -> list[str]:
    lines = [f"# Crop-mode comparison ({'SMOKE RUN' if grid.config.smoke_label else 'results'})",
             ""]
    if grid.config.smoke_label:
        lines += [
            "> **Smoke run.** This budget only proves that the pipeline runs end to end. "
            "It says nothing about whether ContrastiveCrop helps: too few epochs, images "
            "and seeds. For the real comparison run the full default grid:",
            ">",
            "> `timm-ccrop compare`  (SimCLR x rcrop, ccrop, ccrop-gt x seeds 0-5, 24 "
            "epochs of 2500 images)",
            "",
        ]
    return lines


def _settings(grid: GridResult) -> list[str]:
    config, everything = grid.config, [*grid.cells, *grid.random_init]
    reused = sum(bool(c.get("reused")) for c in everything)
    train_total = sum(c.get("train_wall_s", 0.0) for c in grid.cells)
    devices = sorted({str(c["device"]) for c in everything if c.get("device")})
    warmup = ("20% of training" if config.box_warmup_epochs is None
              else "none: a box pass on the random-init network before epoch 1"
              if config.box_warmup_epochs == 0 else config.box_warmup_epochs)
    momentum = config.arm_box_schedule("ccrop")[1]
    momentum_text = f", box momentum {momentum:g} (model boxes)" if momentum else ""
    return [
        "## Settings", "",
        f"- command (reproduces this report): `{grid.command}`",
        f"- machine: {machine_description()}"
        + (f"; cells evaluated on {', '.join(devices)}" if devices else ""),
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- data: `{config.data}` ({grid.data_name}; "
        + ("with ground-truth object boxes" if grid.has_boxes else
           "no ground-truth boxes: no oracle arm, box IoU or false-positive pairs") + ")",
        f"- scored split: {grid.scoring.describe()}",
        f"- model `{config.model}`, methods {list(config.methods)}, crop modes "
        f"{list(grid.modes)}, seeds {list(config.seeds)}",
        "- arms:",
        *[f"  - `{mode}`: {arm_description(grid, mode)}" for mode in grid.modes],
        f"- epochs {config.epochs}, batch {config.batch_size}, lr {config.lr} (linear warm-up "
        f"{config.lr_warmup_epochs} epochs), alpha {config.alpha}, "
        f"box warm-up {warmup}{momentum_text}"
        + "".join(f" (the {mode} arm: 20% of training)" for mode in grid.modes
                  if config.arm_box_schedule(mode)[0] != config.box_warmup_epochs) + ", "
        f"augment_on `{config.augment_on}`; box interval: the localizer's default (a box "
        "pass every 20% of training; harvest: every epoch)",
        "- evaluation: `run_evaluation(protocol='both', linear_mode='fast')`, top-1 (%) "
        f"on the scored split (`{grid.scoring.split}`"
        + (f", {grid.scoring.val_fraction:.0%} carve-out" if grid.scoring.carved else "")
        + "); mean ± std over seeds (std of n=1 is not shown)",
        f"- total wall time {grid.wall / 60:.1f} min"
        + (f" ({reused} of {len(everything)} cells, random init included, reused from an "
           "earlier run and not recomputed)" if reused else "")
        + f"; training time of the pretraining cells: {train_total / 60:.1f} min in all",
    ]


def _accuracy_tables(grid: GridResult) -> list[str]:
    groups = grid.groups
    lines = ["", "## Does the baseline learn at all?", "",
             "| network | kNN top-1 | linear top-1 |", "|---|---|---|",
             f"| random init `{grid.config.model}` | "
             f"{mean_std([r['knn'] for r in grid.random_init])} | "
             f"{mean_std([r['linear'] for r in grid.random_init])} |"]
    for method in grid.config.methods:
        rc = groups.get((method, BASELINE), [])
        if rc:
            lines.append(f"| {method} + rcrop | {mean_std([c['knn'] for c in rc])} | "
                         f"{mean_std([c['linear'] for c in rc])} |")
    lines += ["", "## Accuracy per cell (top-1 %, mean ± std over seeds)", "",
              "| method | crop mode | kNN | linear | seeds |", "|---|---|---|---|---|"]
    for (method, mode), group in groups.items():
        lines.append(f"| {method} | {mode} | {mean_std([c['knn'] for c in group])} | "
                     f"{mean_std([c['linear'] for c in group])} | "
                     f"{', '.join(str(c['seed']) for c in group)} |")
    lines += ["", "## Accuracy per seed (top-1 %)", "",
              "| method | crop mode | seed | kNN | linear |", "|---|---|---|---|---|"]
    for (method, mode), group in groups.items():
        for cell in sorted(group, key=lambda c: c["seed"]):
            lines.append(f"| {method} | {mode} | {cell['seed']} | {cell['knn']:.2f} | "
                         f"{cell['linear']:.2f} |")
    return lines


def _differences(grid: GridResult) -> list[str]:
    groups = grid.groups
    lines = ["", "## Difference from rcrop (same seed, top-1 points, mean ± std over seeds)",
             "", "Each seed's run minus the rcrop run with the same seed (same data order, "
             "same initialisation), so seed-to-seed spread that both share cancels. "
             "`n` is the number of seed pairs; the 95% interval of the mean difference is "
             "Student t with n - 1 degrees of freedom (n/a for one pair). An interval that "
             "excludes 0 is a difference the seeds resolve.", "",
             "| method | crop mode | Δ kNN | 95% CI kNN | Δ linear | 95% CI linear | n |",
             "|---|---|---|---|---|---|---|"]
    for (method, mode), group in groups.items():
        if mode == BASELINE:
            continue
        deltas = paired_differences(group, groups.get((method, BASELINE), []))
        lines.append(f"| {method} | {mode} | {mean_std(deltas['knn'], signed=True)} | "
                     f"{format_interval(t_interval(deltas['knn']))} | "
                     f"{mean_std(deltas['linear'], signed=True)} | "
                     f"{format_interval(t_interval(deltas['linear']))} | "
                     f"{len(deltas['knn'])} |")
    return lines


def _share_rows(grid: GridResult) -> list[str]:
    groups, rows = grid.groups, []
    for (method, mode), group in groups.items():
        oracle_cells = groups.get((method, ORACLE), [])
        base = groups.get((method, BASELINE), [])
        if mode not in MODEL_BOX_ARMS or not oracle_cells or not base:
            continue
        row = [method, mode, f"`{describe_localizer(mode, grid.config.resolved_localizer())}`"]
        count = 0
        for key in ("knn", "linear"):
            arm_d = deltas_by_seed(group, base, key)
            oracle_d = deltas_by_seed(oracle_cells, base, key)
            seeds = sorted(set(arm_d) & set(oracle_d))
            count = len(seeds)
            result = bootstrap_share([arm_d[s] for s in seeds], [oracle_d[s] for s in seeds])
            row += (["n/a", "n/a"] if result is None
                    else [f"{result[0]:.2f}", f"[{result[1]:.2f}, {result[2]:.2f}]"])
        rows.append("| " + " | ".join([*row, str(count)]) + " |")
    return rows


def _share(grid: GridResult) -> list[str]:
    lines = ["", "## Share of the oracle's gain", ""]
    if not grid.has_boxes:
        return lines + [_NO_BOXES.format(data=grid.config.data,
                                          what="the oracle's gain (ccrop-gt)")]
    rows = _share_rows(grid) or ["| (needs rcrop, ccrop-gt and a model-box arm) "
                                 "| | | | | | | |"]
    return lines + [
        "How much of the oracle's paired gain (ccrop-gt - rcrop) each localizer arm "
        "captures: share = mean(arm - rcrop) / mean(oracle - rcrop) over the seeds all "
        "three share (1 = as good as the ground-truth boxes, 0 = no better than rcrop). "
        f"95% interval: percentile interval of a paired bootstrap over seeds "
        f"({BOOTSTRAP_RESAMPLES} resamples, `scipy.stats.bootstrap`, seed {BOOTSTRAP_SEED}). "
        "n/a where the oracle's own gain is not resolved (its 95% t interval includes 0, "
        "or fewer than two seeds): then there is no gain to take a share of.", "",
        "| method | crop mode | localizer | share kNN | 95% CI kNN | share linear | "
        "95% CI linear | n |", "|---|---|---|---|---|---|---|---|", *rows]


def _false_positives(grid: GridResult) -> list[str]:
    threshold = grid.config.fp_threshold
    lines = ["", f"## False-positive positive pairs (coverage < {threshold:.0%})", ""]
    if not grid.has_boxes:
        return lines + [_NO_BOXES.format(
            data=grid.config.data, what="the view pairs that miss the object")]
    lines += [
        f"Share of sampled view pairs ({grid.config.fp_pairs} pairs per training image, "
        "`contrastive_crop_params` with the run's final boxes, cifar view scale "
        f"{VIEW_SCALE}) in which at least one view covers less than {threshold:.0%} "
        "of the ground-truth object box (coverage = area(view ∩ gt) / area(gt)). For the "
        f"model-box arms ({', '.join(MODEL_BOX_ARMS)}) the boxes are the run's final "
        "`boxes.csv` (invalid boxes fall back to RandomResizedCrop, as in training).", "",
        "| method | crop mode | false-positive rate (%) |", "|---|---|---|"]
    for (method, mode), group in grid.groups.items():
        lines.append(f"| {method} | {mode} | "
                     f"{mean_std([100 * c['fp_rate'] for c in group])} |")
    return lines


def _box_picture(picture: tuple[Path, int, str] | None) -> list[str]:
    if picture is None:
        return []
    return ["", "## Each arm's boxes on the same images", "",
            f"The final boxes of seed {picture[1]} ({picture[2]}) of every arm that crops "
            "with boxes (red), with the ground truth (green) and their IoU where there is "
            "one; images evenly spaced through the training split.", "",
            f"![each arm's boxes]({picture[0].name})"]


def _box_quality(grid: GridResult) -> list[str]:
    lines = ["", "## Box quality (model boxes vs ground truth, mean IoU)", ""]
    if not grid.has_boxes:
        return lines + [_NO_BOXES.format(data=grid.config.data, what="the boxes' IoU")]
    lines += ["| method | crop mode | seed | epoch | box mean IoU | whole-image mean IoU |",
              "|---|---|---|---|---|---|"]
    rows = []
    for cell in grid.cells:
        if cell["mode"] not in MODEL_BOX_ARMS:
            continue
        for p in cell["box_passes"]:
            whole = p["whole_image_mean_iou"]
            rows.append(f"| {cell['method']} | {cell['mode']} | {cell['seed']} | "
                        f"{p['epoch']} | {p['box_mean_iou']:.3f} | "
                        f"{'n/a' if whole is None else f'{whole:.3f}'} |")
    return lines + (rows or ["| (no box pass ran) | | | | | |"])


def _overhead(grid: GridResult) -> list[str]:
    lines = ["", "## Overhead of the box passes", "",
             "| method | crop mode | box-pass s | training s (sum of epochs) | share |",
             "|---|---|---|---|---|"]
    for (method, mode), group in grid.groups.items():
        if mode not in MODEL_BOX_ARMS:
            continue
        box = mean_or_nan([c["box_pass_seconds"] for c in group])
        total = mean_or_nan([c["epoch_seconds"] + c["box_pass_seconds"] for c in group])
        lines.append(f"| {method} | {mode} | {box:.1f} | {total:.1f} | "
                     f"{100 * box / total if total else float('nan'):.1f}% |")
    return lines + ["", "Training seconds = sum of `epoch_seconds` plus `box_pass_seconds` "
                    "from metrics.jsonl (the box pass is timed outside the epoch).", ""]


def report_text(grid: GridResult, plot: Path, picture: tuple[Path, int, str] | None) -> str:
    """The whole Markdown report; ``plot`` and ``picture`` (the box picture's path, seed
    and method, or None) are linked by file name."""
    lines = [*_title(grid), *_settings(grid), *_accuracy_tables(grid), *_differences(grid),
             *_share(grid), "", f"![accuracy per crop mode]({plot.name})",
             *_false_positives(grid), *_box_picture(picture), *_box_quality(grid),
             *_overhead(grid)]
    return "\n".join(lines)
