"""A run's records: its config.yaml, its metrics.jsonl rows and its boxes.csv."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from ..utils.folders import atomic_write_text
from .names import BOXES_CSV_COLUMNS, BOXES_FILE, CONFIG_FILE, METRICS_FILE

__all__ = ["read_boxes_csv", "read_metrics", "read_run_config", "write_boxes_csv"]


def read_run_config(run: Path) -> dict[str, Any] | None:
    """The run's ``config.yaml`` as a dict, or None when there is none.

    Raises ValueError (one line naming the file) when it is not a YAML mapping.
    """
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(err).split())[:200]}); "
                         "restore the run's config.yaml (each checkpoint carries a copy)"
                         ) from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must be a YAML mapping of config keys, got "
                         f"{type(values).__name__}; restore the run's config.yaml")
    return values


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (a run folder or the file itself).

    Raises ValueError naming the file and the line when a row is not a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{path} line {number} is not valid JSON ({err}); remove or "
                             "repair that line") from err
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int) \
                or isinstance(row["epoch"], bool):
            raise ValueError(f"{path} line {number} is not a metrics row (a JSON object "
                             f"with an integer 'epoch'), got {line.strip()[:60]!r}; remove "
                             "or repair that line")
        rows.append(row)
    return rows


def write_boxes_csv(path: Path, boxes: torch.Tensor, valid: torch.Tensor | None = None,
                    sample_ids: Sequence[str] | None = None) -> None:
    """Write ``boxes`` (N x 4, normalised ``x0, y0, x1, y1``) in the one ``boxes.csv``
    schema (:data:`BOXES_CSV_COLUMNS`), atomically. ``sample_ids`` default to the index;
    ``valid`` to all True."""
    rows = boxes.reshape(-1, 4).tolist()
    flags = valid.tolist() if valid is not None else [True] * len(rows)
    ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(len(rows))]
    if not len(rows) == len(flags) == len(ids):
        raise ValueError(f"boxes ({len(rows)}), valid ({len(flags)}) and sample ids "
                         f"({len(ids)}) differ in length")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BOXES_CSV_COLUMNS)
    for index, (row, flag, sample_id) in enumerate(zip(rows, flags, ids, strict=True)):
        writer.writerow([index, sample_id, *(f"{v:.6f}" for v in row), int(bool(flag))])
    atomic_write_text(Path(path), out.getvalue())


def read_boxes_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The boxes of a ``boxes.csv`` (a run folder or the file): ``(boxes N x 4, valid N,
    sample ids)``, rows in index order.

    Raises FileNotFoundError when there is none, ValueError (naming the file and line)
    when its columns are not the schema's or a row is not a box.
    """
    path = Path(path)
    if path.is_dir():
        path = path / BOXES_FILE
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != BOXES_CSV_COLUMNS:
            raise ValueError(f"{path} has columns {list(header)}, not the boxes.csv schema "
                             f"{list(BOXES_CSV_COLUMNS)}")
        rows = list(reader)
    boxes, valid, ids = [], [], []
    for number, row in enumerate(rows, 2):
        try:
            index, sample_id, *coords, flag = row
            if int(index) != number - 2 or len(coords) != 4:
                raise ValueError("rows out of order or not 7 columns")
            boxes.append([float(v) for v in coords])
            valid.append(bool(int(flag)))
            ids.append(sample_id)
        except ValueError as err:
            raise ValueError(f"{path} line {number} is not a boxes.csv row ({err}); rewrite "
                             "the file with write_boxes_csv") from err
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.tensor(valid, dtype=torch.bool), ids)
