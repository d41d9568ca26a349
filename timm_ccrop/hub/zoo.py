"""The model zoo index: ``zoo/models.yaml`` (installed as ``timm_ccrop.zoo``).

Each entry is a :class:`ZooEntry`: the release it describes (``entry.release``, a
:class:`~timm_ccrop.hub.release.Release`) plus the zoo's own fields (the recipe, where the
weights are, whether they were trained here and what they are good for).
:func:`entry_problems` validates an entry (fields, ids, recipe, weights and their sha256);
:func:`format_zoo_table` is the table of ``timm-ccrop zoo``. Importing :mod:`timm_ccrop`
makes the entries loadable by name (:mod:`timm_ccrop.hub.registry`).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from timm.models import is_model

from ..config import CROP_MODES, TrainConfig, load_recipe
from ..data.kinds import DATASET_KINDS
from ..methods import METHODS
from ..models.backbones import CONFIG_NAME, WEIGHTS_NAME, sha256_file
from .release import HubExportError, Measurement, Release, check_repo_id, check_tag

__all__ = [
    "INDEX_NAME",
    "METRIC_FIELDS",
    "REQUIRED_FIELDS",
    "SHA256_PREFIX",
    "ZooEntry",
    "entry_problems",
    "format_zoo_table",
    "load_zoo",
    "zoo_root",
]

INDEX_NAME = "models.yaml"
#: Fields every entry must have.
REQUIRED_FIELDS = ("architecture", "tag", "method", "crop", "dataset", "recipe", "license",
                   "trained_here", "input", "weights", "metrics")
#: Fields every measurement must have.
METRIC_FIELDS = ("protocol", "dataset", "split", "top1", "command")


def zoo_root() -> Path:
    """The installed ``timm_ccrop.zoo`` folder (``zoo/`` in a source checkout)."""
    return Path(str(resources.files("timm_ccrop.zoo")))


@dataclass(frozen=True)
class ZooEntry:
    """One released model of ``models.yaml``, its fields as written there."""

    architecture: str
    tag: str
    method: str
    crop: str
    dataset: str
    recipe: str
    license: str
    trained_here: bool
    input: dict[str, Any]
    weights: dict[str, Any]
    metrics: list[dict[str, Any]]
    status: str = ""
    crop_params: dict[str, Any] = field(default_factory=dict)
    trained_with: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """``architecture.tag``, the timm name of the entry's weights."""
        return f"{self.architecture}.{self.tag}"

    @property
    def hf_hub_id(self) -> str | None:
        """The Hub repo of the weights, once published."""
        return self.weights.get("hf_hub_id") or None

    @property
    def release(self) -> Release:
        """The release this entry describes (malformed input or metric values, which
        :func:`entry_problems` names, are left out)."""
        inp = self.input if isinstance(self.input, Mapping) else {}
        rows = self.metrics if isinstance(self.metrics, list) else []
        return Release(
            architecture=self.architecture, tag=self.tag, method=self.method, crop=self.crop,
            dataset=self.dataset, license=self.license,
            input_size=tuple(inp.get("input_size") or ()), mean=tuple(inp.get("mean") or ()),
            std=tuple(inp.get("std") or ()),
            interpolation=inp.get("interpolation", "bilinear"),
            crop_pct=inp.get("crop_pct", 1.0), crop_params=dict(self.crop_params or {}),
            measurements=tuple(m for m in map(Measurement.from_zoo_row, rows) if m is not None),
            hf_hub_id=self.hf_hub_id,
            description=f"{self.method} + {self.crop} on {self.dataset} (timm-ccrop zoo)",
        )

    def bundled_folder(self, root: Path | None = None) -> Path | None:
        """The folder of the bundled weights (config.json + model.safetensors), if any."""
        bundled = self.weights.get("bundled")
        return (root or zoo_root()) / bundled if bundled else None

    def metric(self, protocol: str, split: str = "test") -> float | None:
        """The top-1 of the first ``protocol`` measurement on ``split``, if any."""
        for row in self.metrics:
            if row.get("protocol") == protocol and row.get("split", "test") == split:
                return float(row["top1"])
        return None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ZooEntry:
        """An entry of ``models.yaml``; ValueError when a required field is missing."""
        missing = [name for name in REQUIRED_FIELDS if name not in values]
        if missing:
            raise ValueError(f"zoo entry {values.get('architecture')}.{values.get('tag')} "
                             f"lacks {missing}")
        known = {f for f in cls.__dataclass_fields__ if f != "raw"}
        kwargs = {k: values[k] for k in known if k in values}
        return cls(**kwargs, raw=dict(values))


def load_zoo(path: str | Path | None = None) -> list[ZooEntry]:
    """The entries of ``models.yaml`` (default: the installed package's)."""
    path = Path(path) if path is not None else zoo_root() / INDEX_NAME
    data = yaml.safe_load(path.read_text()) or {}
    models = data.get("models") if isinstance(data, dict) else None
    if models is None:
        return []
    if not isinstance(models, list):
        raise ValueError(f"{path}: 'models' must be a list of entries")
    return [ZooEntry.from_dict(values) for values in models]


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _field_problems(entry: ZooEntry, check_architecture: bool) -> list[str]:
    problems = []
    for name in REQUIRED_FIELDS:
        value = getattr(entry, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"field '{name}' is empty")
    try:
        check_tag(entry.tag)
    except HubExportError as err:
        problems.append(str(err))
    if check_architecture and not is_model(entry.architecture):
        problems.append(f"architecture {entry.architecture!r} is not a timm model")
    if entry.method not in METHODS:
        problems.append(f"method {entry.method!r} is not one of {sorted(METHODS)}")
    if entry.crop not in CROP_MODES:
        problems.append(f"crop {entry.crop!r} is not one of {list(CROP_MODES)}")
    if str(entry.dataset).split(":", 1)[0].lower() not in DATASET_KINDS:
        problems.append(f"dataset {entry.dataset!r} is not one of {list(DATASET_KINDS)} "
                        "(or a spec of one)")
    if not isinstance(entry.trained_here, bool):
        problems.append("trained_here must be true or false")
    return problems


def _recipe_path(entry: ZooEntry, root: Path) -> Path:
    recipe = str(entry.recipe)
    if recipe.endswith((".yaml", ".yml")):
        return root / recipe
    return root / "recipes" / f"{recipe}.yaml"


def _recipe_problems(entry: ZooEntry, root: Path) -> list[str]:
    """The recipe exists, loads, and describes this model."""
    path = _recipe_path(entry, root)
    if not path.is_file():
        return [f"recipe {entry.recipe!r} not found at {path}"]
    try:
        recipe = load_recipe(str(path))
    except (ValueError, OSError) as err:
        return [f"recipe {path} does not load: {err}"]
    defaults = TrainConfig()
    problems = []
    for key, value in (("model", entry.architecture), ("method", entry.method),
                       ("crop", entry.crop)):
        found = recipe.get(key, getattr(defaults, key))
        if found != value:
            problems.append(f"recipe {entry.recipe!r} has {key}={found!r}, the entry {value!r}")
    return problems


def _input_problems(entry: ZooEntry) -> list[str]:
    inp = entry.input if isinstance(entry.input, Mapping) else {}
    size = inp.get("input_size")
    problems = []
    if not (isinstance(size, Sequence) and len(size) == 3 and all(_is_number(v) for v in size)):
        problems.append("input.input_size must be [channels, height, width]")
    for key in ("mean", "std"):
        value = inp.get(key)
        if not (isinstance(value, Sequence) and value and all(_is_number(v) for v in value)):
            problems.append(f"input.{key} must be a list of numbers")
    return problems


def _weights_problems(entry: ZooEntry, root: Path, check_sha: bool) -> list[str]:
    weights = entry.weights if isinstance(entry.weights, Mapping) else {}
    problems = []
    if not weights.get("bundled") and not weights.get("hf_hub_id"):
        problems.append("weights must name 'bundled' (a folder under zoo/) and/or 'hf_hub_id'")
    if weights.get("hf_hub_id"):
        try:
            check_repo_id(weights["hf_hub_id"])
        except HubExportError as err:
            problems.append(str(err))
    folder = entry.bundled_folder(root)
    if folder is not None:
        problems += _bundled_problems(entry, folder, weights, check_sha)
    return problems


def _bundled_problems(entry: ZooEntry, folder: Path, weights: Mapping[str, Any],
                      check_sha: bool) -> list[str]:
    problems = []
    weights_file, config_file = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights_file.is_file():
        return [f"bundled weights {weights_file} do not exist"]
    if not config_file.is_file():
        problems.append(f"bundled {config_file} does not exist")
    else:
        config = json.loads(config_file.read_text())
        if config.get("architecture") != entry.architecture:
            problems.append(f"bundled config.json is for {config.get('architecture')!r}, the "
                            f"entry for {entry.architecture!r}")
        cfg = config.get("pretrained_cfg") or {}
        for key in ("input_size", "mean", "std"):
            if key in entry.input and [float(v) for v in cfg.get(key, [])] != \
                    [float(v) for v in entry.input[key]]:
                problems.append(f"input.{key} {entry.input[key]} differs from the bundled "
                                f"config.json's {cfg.get(key)}")
    if check_sha:
        expected = weights.get("sha256")
        if not expected:
            problems.append("weights.sha256 (of the bundled model.safetensors) is missing")
        elif sha256_file(weights_file) != expected:
            problems.append(f"bundled {weights_file.name} does not match weights.sha256")
    return problems


def _metric_problems(entry: ZooEntry) -> list[str]:
    if not isinstance(entry.metrics, list):
        return ["metrics must be a list (empty when nothing was measured)"]
    problems = []
    for index, row in enumerate(entry.metrics):
        if not isinstance(row, Mapping):
            problems.append(f"metrics[{index}] is not a mapping")
            continue
        lacking = [k for k in METRIC_FIELDS if row.get(k) in (None, "")]
        if lacking:
            problems.append(f"metrics[{index}] lacks {lacking}")
        for key in ("top1", "top5"):
            if key in row and not (_is_number(row[key]) and 0 <= row[key] <= 100):
                problems.append(f"metrics[{index}].{key} must be a percentage")
        if not str(row.get("command", "")).startswith("timm-ccrop "):
            problems.append(f"metrics[{index}].command must be the timm-ccrop command "
                            "that measured it")
    return problems


def entry_problems(entry: ZooEntry, root: Path | None = None, check_sha: bool = True,
                   check_architecture: bool = True) -> list[str]:
    """What is wrong with ``entry`` (empty: nothing). Checks fields, ids, recipe, weights."""
    root = root or zoo_root()
    return [*_field_problems(entry, check_architecture), *_recipe_problems(entry, root),
            *_input_problems(entry), *_weights_problems(entry, root, check_sha),
            *_metric_problems(entry)]


# --------------------------------------------------------------------------------------
# The table of `timm-ccrop zoo`
# --------------------------------------------------------------------------------------


#: Characters of the weights' sha256 the table shows (enough to tell two files apart).
SHA256_PREFIX = 10
_TABLE_HEADER = ("model", "kNN top-1", "linear top-1", "method", "crop", "sha256")


def _top1(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def format_zoo_table(entries: Sequence[ZooEntry]) -> str:
    """The zoo as plain text: one row of measured numbers per model, then its data.

    Each model has a row (name, kNN and linear top-1 on the test split, method, crop mode,
    the first characters of the weights' sha256; "-" where nothing was measured) and an
    indented line with the dataset, where the weights are and whether they were trained
    here. With names of up to 44 characters it fits in 100 columns.
    """
    if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Sequence):
        raise ValueError(f"format_zoo_table takes a list of ZooEntry (load_zoo()), got "
                         f"{type(entries).__name__}")
    bad = [entry for entry in entries if not isinstance(entry, ZooEntry)]
    if bad:
        raise ValueError(f"format_zoo_table takes ZooEntry objects (load_zoo()), got "
                         f"{type(bad[0]).__name__}")
    rows = [_TABLE_HEADER]
    details = []
    for entry in entries:
        weights = entry.weights if isinstance(entry.weights, Mapping) else {}
        sha = str(weights.get("sha256") or "-")[:SHA256_PREFIX]
        rows.append((entry.name, _top1(entry.metric("knn")), _top1(entry.metric("linear")),
                     entry.method, entry.crop, sha))
        where = ", ".join(part for part in (
            "bundled" if weights.get("bundled") else "",
            f"hf-hub:{entry.hf_hub_id}" if entry.hf_hub_id else "") if part) or "-"
        text = (f"data {entry.dataset}; weights {where}; "
                + ("trained here" if entry.trained_here is True else "not trained here"))
        # long data specs wrap, so the table stays within 100 columns
        details.append(textwrap.fill(text, 100, initial_indent="    ", subsequent_indent="      ",
                                     break_on_hyphens=False))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(_TABLE_HEADER))]
    numeric = {1, 2}  # right-aligned, so the decimal points line up

    def line(row: Sequence[str]) -> str:
        cells = [str(cell).rjust(width) if i in numeric else str(cell).ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    lines = [line(rows[0]), "  ".join("-" * width for width in widths)]
    for row, detail in zip(rows[1:], details, strict=True):
        lines += [line(row), detail]
    return "\n".join(lines)
