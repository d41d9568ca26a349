"""What a run shows at the end: its baseline, its summary, its plot, its one line per epoch.

- :func:`measure_baseline`, before epoch 1 of a fresh run: the kNN top-1 of the randomly
  initialised backbone, the IoU of the whole-image box with the ground truth, and the
  false-positive pair rate of random crops: what the run is compared with, measured in
  the same run, on the same data.
- :func:`summarize_run`, after the last epoch: the trained kNN top-1, the last box pass's
  IoU, the false-positive pair rate of the run's own views, and where the outputs are.
- :func:`plot_run` draws ``metrics.png`` (loss, lr, kNN, box IoU per epoch);
  :func:`format_summary` is the text ``timm-ccrop pretrain`` ends with and
  ``timm-ccrop report RUN`` prints; :func:`epoch_line` is the persistent line per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..crop.boxes import Box, BoxTable, whole_image_iou
from ..crop.pair_quality import false_positive_pair_rate
from ..crop.transforms import SIMCCROP_BOX
from ..crop.views import view_preset
from ..pictures.charts import Panel, Reference, Series, line_chart_grid
from ..runs import RunFolder

__all__ = ["crop_boxes_for", "epoch_line", "format_summary", "gt_boxes_of",
           "measure_baseline", "measure_pair_quality", "plot_run", "report_run",
           "summarize_run"]


def gt_boxes_of(dataset: Any) -> torch.Tensor | None:
    """The dataset's ground-truth object boxes ``[N, 4]``, or None where it has none."""
    boxes = getattr(dataset, "gt_boxes", None)
    return None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32)


def crop_boxes_for(config: TrainConfig, boxes: BoxTable | None,
                   gt: torch.Tensor | None) -> list[Box | None]:
    """Each training image's crop box as the run's views use it after its warm-up (None:
    RandomResizedCrop)."""
    count = len(gt) if gt is not None else len(boxes) if boxes is not None else 0
    if config.crop == "simccrop":
        return [SIMCCROP_BOX] * count
    if config.crop == "rcrop":
        return [None] * count
    if config.box_source == "ground-truth" and gt is not None:
        return [Box(*row) for row in gt.tolist()]
    if boxes is None:
        return [None] * count
    return [Box(*row) if ok else None
            for row, ok in zip(boxes.boxes.tolist(), boxes.valid.tolist(), strict=True)]


def measure_pair_quality(config: TrainConfig, crop_boxes: Sequence[Box | None],
                         gt: torch.Tensor) -> float:
    """False-positive pair rate of views cropped with ``crop_boxes`` (the run's preset)."""
    recipe = view_preset(config.views)[0]
    alpha = config.resolved_alpha() or 1.0
    return false_positive_pair_rate(crop_boxes, gt, config.resolved_image_size(), alpha,
                                    pairs=4, seed=config.seed, scale=tuple(recipe.scale),
                                    ratio=tuple(recipe.ratio))


def measure_baseline(config: TrainConfig, dataset: Any,
                     random_init_knn: Mapping[str, float] | None) -> dict[str, Any]:
    """The run's baseline, measured before epoch 1 (see the module docstring)."""
    baseline: dict[str, Any] = {}
    if random_init_knn:
        baseline.update({f"random_init_{key}": value for key, value in random_init_knn.items()})
    gt = gt_boxes_of(dataset)
    if gt is not None:
        baseline["whole_image_mean_iou"] = float(whole_image_iou(gt).mean())
        baseline["false_positive_pairs_rcrop"] = measure_pair_quality(
            config, [None] * len(gt), gt)
    return baseline


def _last(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[int, Any] | None:
    for row in reversed(rows):
        if row.get(key) is not None:
            return int(row["epoch"]), row[key]
    return None


def summarize_run(config: TrainConfig, folder: RunFolder, rows: Sequence[Mapping[str, Any]],
                  baseline: Mapping[str, Any], dataset: Any, boxes: BoxTable | None,
                  export: Path | None) -> dict[str, Any]:
    """The run's summary (written to ``summary.json`` by the trainer)."""
    summary: dict[str, Any] = {
        "run": str(folder.path), "model": config.model, "method": config.method,
        "crop": config.crop, "localizer": config.localizer, "epochs": len(rows),
        "train_seconds": sum(float(r.get("epoch_seconds", 0.0)) for r in rows),
        **dict(baseline),
    }
    for key in ("knn_top1", "knn_top5", "box_mean_iou"):
        found = _last(rows, key)
        if found is not None:
            summary[f"{key}_epoch"], summary[key] = found
    gt = gt_boxes_of(dataset)
    if gt is not None and config.crop != "rcrop":
        summary["false_positive_pairs"] = measure_pair_quality(
            config, crop_boxes_for(config, boxes, gt), gt)
    pictures = folder.box_pictures()
    summary["outputs"] = {
        "plot": str(folder.plot_path), "metrics": str(folder.metrics_path),
        "box_picture": str(pictures[-1]) if pictures else None,
        "backbone": str(export) if export is not None else None,
    }
    return summary


def _percent(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if _number(value) else "n/a"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(float(value))


def _measured_lines(summary: Mapping[str, Any]) -> list[str]:
    lines = []
    knn, knn0 = summary.get("knn_top1"), summary.get("random_init_knn_top1")
    if _number(knn):
        gain = f"   ({float(knn) - float(knn0):+.1f} points)" if _number(knn0) else ""
        lines.append(f"  kNN top-1 (eval split)      {float(knn):5.1f}%   random init "
                     f"{float(knn0) if _number(knn0) else float('nan'):5.1f}%{gain}")
    iou, whole = summary.get("box_mean_iou"), summary.get("whole_image_mean_iou")
    if _number(iou):
        ratio = f"   ({float(iou) / float(whole):.1f}x)" if _number(whole) and whole else ""
        lines.append(f"  box IoU with ground truth    {float(iou):.3f}   whole image "
                     f"{float(whole) if _number(whole) else float('nan'):.3f}{ratio}")
    fp, fp0 = summary.get("false_positive_pairs"), summary.get("false_positive_pairs_rcrop")
    if _number(fp) or _number(fp0):
        lines.append(f"  false-positive view pairs    {_percent(fp):>5}   random crop "
                     f"{_percent(fp0)}")
    return lines or ["  (no kNN monitor, no boxes and no ground truth: nothing to compare)"]


def _next_lines(summary: Mapping[str, Any]) -> list[str]:
    outputs = summary.get("outputs") or {}
    run = summary.get("run", "RUN")
    lines = ["open next:", f"  plot         {outputs.get('plot')}"]
    if outputs.get("box_picture"):
        lines.append(f"  box picture  {outputs['box_picture']}")
    if outputs.get("backbone"):
        lines += [f"  backbone     {outputs['backbone']}  "
                  f"(timm.create_model('local-dir:{outputs['backbone']}', pretrained=True))",
                  f"  evaluate     timm-ccrop eval --backbone {run} --protocol both",
                  f"  push         timm-ccrop push {outputs['backbone']} --repo-id YOU/NAME"]
    lines.append(f"  report       timm-ccrop report {run}")
    return lines


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as the text ``pretrain`` ends with and ``report`` prints."""
    minutes, seconds = divmod(int(round(float(summary.get("train_seconds", 0.0)))), 60)
    head = (f"summary of {summary.get('run')}: {summary.get('method')} + "
            f"{summary.get('crop')} on {summary.get('model')}, {summary.get('epochs')} "
            f"epochs, {minutes}m{seconds:02d}s of training")
    return "\n".join([head, *_measured_lines(summary), *_next_lines(summary)])


def epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """The one persistent line of an epoch: loss, lr, images/s, kNN, box IoU, time."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"loss {record.get('loss', float('nan')):.4f}",
             f"lr {record.get('lr', float('nan')):.4g}",
             f"{record.get('images_per_second', 0.0):.0f} img/s"]
    if _number(record.get("knn_top1")):
        parts.append(f"kNN {record['knn_top1']:.1f}%")
    if _number(record.get("box_mean_iou")):
        parts.append(f"box IoU {record['box_mean_iou']:.3f}")
    parts.append(f"{record.get('epoch_seconds', 0.0):.1f}s")
    return " | ".join(parts)


def _series(rows: Sequence[Mapping[str, Any]], key: str, label: str) -> Series:
    pairs = [(r["epoch"], r.get(key)) for r in rows if _number(r.get(key))]
    return Series(label, [p[0] for p in pairs], [float(p[1]) for p in pairs])


def plot_run(rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any], path: Path,
             title: str) -> Path:
    """Write the run's PNG of loss, lr, kNN and box IoU per epoch; returns ``path``."""
    knn0, whole = baseline.get("random_init_knn_top1"), baseline.get("whole_image_mean_iou")
    panels = [
        Panel("training loss", [_series(rows, "loss", "loss")]),
        Panel("learning rate (end of epoch)", [_series(rows, "lr", "lr")]),
        Panel("kNN top-1 (%)", [_series(rows, "knn_top1", "kNN")],
              [Reference("random init", float(knn0))] if _number(knn0) else []),
        Panel("box IoU with ground truth", [_series(rows, "box_mean_iou", "box IoU")],
              [Reference("whole image", float(whole))] if _number(whole) else []),
    ]
    image = line_chart_grid(panels, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _epoch_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    def cell(value: Any, spec: str) -> str:
        return format(float(value), spec) if _number(value) else "-"

    lines = ["| epoch | loss | lr | kNN top-1 | box IoU | img/s | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['epoch']} | {cell(r.get('loss'), '.4f')} | {cell(r.get('lr'), '.4g')} "
                     f"| {cell(r.get('knn_top1'), '.1f')} | {cell(r.get('box_mean_iou'), '.3f')} "
                     f"| {cell(r.get('images_per_second'), '.0f')} "
                     f"| {cell(r.get('epoch_seconds'), '.1f')} |")
    return lines


def _rebased(summary: dict[str, Any], run: Path) -> dict[str, Any]:
    """``summary`` with the paths inside the folder it was written in moved to ``run``
    (a copied or moved run folder points at its own files, not at the original's)."""
    written = Path(str(summary.get("run") or run))

    def moved(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return str(run / Path(value).relative_to(written))
        except ValueError:  # not inside the run folder: left as it was
            return value

    outputs = summary.get("outputs") if isinstance(summary.get("outputs"), dict) else {}
    return {**summary, "run": str(run),
            "outputs": {key: moved(value) for key, value in outputs.items()}}


def report_run(path: str | Path) -> str:
    """Redraw ``RUN/metrics.png`` and return the run's epoch table and summary as text.

    Raises ValueError when ``path`` is not a run folder with metrics.
    """
    folder = RunFolder(path)
    rows = folder.read_metrics() if folder.metrics_path.is_file() else []
    if not rows:
        raise ValueError(f"{folder.path} holds no metrics.jsonl rows; give the folder of a "
                         "timm-ccrop pretrain run (its --output)")
    config = folder.read_config() or {}
    baseline = folder.read_json(folder.baseline_path) or {}
    title = (f"{folder.path.name}: {config.get('method', '?')} + {config.get('crop', '?')}, "
             f"{config.get('model', '?')}")
    plot_run(rows, baseline, folder.plot_path, title)
    summary = folder.read_json(folder.summary_path)
    if summary is not None:
        summary = _rebased(summary, folder.path)
    else:
        ended = f"unfinished: {len(rows)} of {config.get('epochs', '?')} epochs"
        summary = {**baseline, "run": str(folder.path), "epochs": f"{len(rows)} ({ended})",
                   "model": config.get("model"), "method": config.get("method"),
                   "crop": config.get("crop"),
                   "train_seconds": sum(float(r.get("epoch_seconds", 0.0)) for r in rows),
                   "outputs": {"plot": str(folder.plot_path)}}
        for key in ("knn_top1", "box_mean_iou"):
            found = _last(rows, key)
            if found is not None:
                summary[key] = found[1]
    return "\n".join([*_epoch_table(rows), "", format_summary(summary)])
