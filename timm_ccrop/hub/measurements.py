"""Measured numbers for a release: ``eval.json`` reports and the trainer's kNN monitor.

A card quotes an ``eval.json`` of ``timm-ccrop eval`` only when it evaluated these very
weights (its sha256 is the exported file's or the state dict's); the training-time kNN
monitor of ``metrics.jsonl`` only when it is of the exported epoch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..models.backbones import WEIGHTS_NAME, sha256_file, state_dict_sha256
from ..runs import RunFolder
from .release import Measurement

__all__ = ["export_hashes", "matching_eval_results", "measurements_from_eval", "monitor_record"]


def _eval_command(report: Mapping[str, Any], backbone_text: str | None = None) -> str:
    """The ``timm-ccrop eval`` command line that wrote ``report``."""
    settings = report.get("settings") or {}
    parts = ["timm-ccrop", "eval", "--backbone",
             str(backbone_text or settings.get("backbone") or "DIR")]
    protocol = settings.get("protocol", "both")
    options = [("data", "--data"), ("protocol", "--protocol"), ("train_split", "--train-split"),
               ("test_split", "--test-split"), ("val_fraction", "--val-fraction"),
               ("image_size", "--image-size"), ("seed", "--seed")]
    if protocol in ("knn", "both"):
        options += [("knn_k", "--knn-k"), ("knn_temperature", "--knn-temperature")]
    if protocol in ("linear", "both"):
        options += [("linear_mode", "--linear-mode"), ("probe_recipe", "--probe-recipe"),
                    ("epochs", "--epochs"), ("lr", "--lr")]
    for key, flag in options:
        value = settings.get(key)
        if key == "knn_temperature" and value is None:
            value = settings.get("knn_t")  # eval.json written before the rename
        if value is None or (key == "val_fraction" and not value):
            continue
        parts += [flag, str(value)]
    if protocol in ("linear", "both") and settings.get("augment") is False:
        parts.append("--no-augment")
    return " ".join(parts)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _protocol_rows(result: Any, protocol: str, details: str, dataset: str,
                   command: str) -> list[Measurement]:
    rows = []
    for split in ("test", "val"):
        acc = result.get(split)
        if isinstance(acc, Mapping) and "top1" in acc:
            rows.append(Measurement(protocol, split, float(acc["top1"]),
                                    _maybe_float(acc.get("top5")), dataset, details, command))
    return rows


def measurements_from_eval(report: Mapping[str, Any]) -> list[Measurement]:
    """The kNN / linear rows of an ``eval.json`` report."""
    dataset = str((report.get("data") or {}).get("spec", "?"))
    command = _eval_command(report)
    rows = []
    knn = report.get("knn")
    if isinstance(knn, Mapping):
        details = f"k={knn.get('k')}, T={knn.get('temperature')}"
        rows += _protocol_rows(knn, "knn", details, dataset, command)
    linear = report.get("linear")
    if isinstance(linear, Mapping):
        recipe = linear.get("recipe") or {}
        details = (f"{linear.get('mode', '?')} mode, {recipe.get('epochs', '?')} epochs, "
                   "final epoch")
        rows += _protocol_rows(linear, "linear", details, dataset, command)
    return rows


def export_hashes(folder: Path, backbone: nn.Module) -> set[str]:
    """The sha256 values an eval report of these weights may carry: of the exported
    ``model.safetensors`` in ``folder`` and of the backbone's state dict."""
    hashes = {sha256_file(Path(folder) / WEIGHTS_NAME)}
    state_hash = state_dict_sha256(backbone.state_dict())
    if state_hash:
        hashes.add(state_hash)
    return hashes


def matching_eval_results(candidates: Sequence[Path], hashes: set[str]) -> list[dict[str, Any]]:
    """eval.json reports among ``candidates`` that evaluated weights with one of ``hashes``;
    the others are skipped with a warning."""
    reports = []
    seen: set[Path] = set()
    for path in candidates:
        path = Path(path).resolve()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            warnings.warn(f"ignoring unreadable {path}: {err}", stacklevel=3)
            continue
        sha = (report.get("backbone") or {}).get("sha256")
        if sha not in hashes:
            warnings.warn(f"ignoring {path}: it evaluated other weights (sha256 "
                          f"{str(sha)[:12]}), not the ones exported", stacklevel=3)
            continue
        report["_path"] = str(path)
        reports.append(report)
    return reports


def monitor_record(run: Path, epoch: int | None) -> dict[str, Any] | None:
    """The trainer's last kNN-monitor record (metrics.jsonl), if it is of ``epoch``; None
    when there is none, or the file cannot be read (the card then shows no monitor)."""
    try:
        rows = RunFolder(run).read_metrics()
    except ValueError as err:  # e.g. a torn last line of a killed run
        warnings.warn(f"no training-time kNN on the card: {err}", stacklevel=3)
        return None
    last = next((row for row in reversed(rows) if "knn_top1" in row), None)
    if last is None or (epoch is not None and last.get("epoch") != epoch):
        return None
    return last
