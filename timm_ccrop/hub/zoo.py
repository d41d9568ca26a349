"""The model zoo: ``zoo/models.yaml`` (installed as ``timm_ccrop.zoo``) as timm pretrained tags.

Importing :mod:`timm_ccrop` registers every zoo entry as a pretrained tag of its
architecture in timm's own registry, so that::

    import timm, timm_ccrop
    timm.list_pretrained("*ccrop*")
    model = timm.create_model("resnet_tiny_cifar.ccrop_simclr_synthetic", pretrained=True)

loads the entry's weights: the bundled ``zoo/weights/NAME/model.safetensors`` of the
installed package (``pretrained_cfg['file']``) or, once published, the Hub repo
(``pretrained_cfg['hf_hub_id']``).

Tags are added to timm's registry structures directly (``_model_pretrained_cfgs``,
``_model_has_pretrained``, ``_model_with_tags`` and the architecture's ``DefaultCfg``),
never with ``register_model``, which would clear the tags timm already has for the
architecture. A tag timm itself owns is never replaced, a tag is never registered for
weights that are not there (the entry is skipped with a warning), and the architecture's
default tag is left as it was.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import models as _models  # noqa: F401  (the CIFAR-stem architectures come first)
from ..backbones import sha256_file

__all__ = [
    "ZooEntry",
    "add_pretrained_tag",
    "entry_problems",
    "format_zoo_table",
    "load_zoo",
    "register_zoo",
    "registered_zoo_tags",
    "remove_pretrained_tag",
    "zoo_pretrained_cfg",
    "zoo_root",
]

INDEX_NAME = "models.yaml"
#: Fields every entry must have.
REQUIRED_FIELDS = ("architecture", "tag", "method", "crop", "dataset", "recipe", "license",
                   "trained_here", "input", "weights", "metrics")
#: Fields every measurement must have.
METRIC_FIELDS = ("protocol", "dataset", "split", "top1", "command")
#: Dataset kinds an entry may name (besides a full data spec).
DATASET_KINDS = ("cifar10", "cifar100", "stl10", "tiny-imagenet", "imagenet", "synthetic",
                 "folder")

# name -> the PretrainedCfg this module put into timm's registry (so re-registration is
# idempotent and removal never touches timm's own tags).
_REGISTERED: dict[str, Any] = {}


def zoo_root() -> Path:
    """The installed ``timm_ccrop.zoo`` folder (``zoo/`` in a source checkout)."""
    return Path(str(resources.files("timm_ccrop.zoo")))


@dataclass(frozen=True)
class ZooEntry:
    """One released model of ``models.yaml``."""

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
        return f"{self.architecture}.{self.tag}"

    @property
    def hf_hub_id(self) -> str | None:
        return self.weights.get("hf_hub_id") or None

    def bundled_folder(self, root: Path | None = None) -> Path | None:
        bundled = self.weights.get("bundled")
        return (root or zoo_root()) / bundled if bundled else None

    def metric(self, protocol: str, split: str = "test") -> float | None:
        for row in self.metrics:
            if row.get("protocol") == protocol and row.get("split", "test") == split:
                return float(row["top1"])
        return None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ZooEntry:
        missing = [name for name in REQUIRED_FIELDS if name not in values]
        if missing:
            raise ValueError(f"zoo entry {values.get('architecture')}.{values.get('tag')} "
                             f"lacks {missing}")
        known = {f for f in cls.__dataclass_fields__ if f != "raw"}
        kwargs = {k: values[k] for k in known if k in values}
        return cls(**kwargs, raw=dict(values))


def load_zoo(path: str | Path | None = None) -> list[ZooEntry]:
    """The entries of ``models.yaml`` (default: the installed package's)."""
    import yaml

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


def _recipe_path(entry: ZooEntry, root: Path) -> Path:
    recipe = str(entry.recipe)
    if recipe.endswith((".yaml", ".yml")):
        return root / recipe
    return root / "recipes" / f"{recipe}.yaml"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def entry_problems(entry: ZooEntry, root: Path | None = None, check_sha: bool = True,
                   check_architecture: bool = True) -> list[str]:
    """What is wrong with ``entry`` (empty: nothing). Checks fields, ids, recipe, weights."""
    from ..config import CROP_MODES, load_recipe
    from ..methods import METHODS
    from .export import HubExportError, check_repo_id, check_tag

    root = root or zoo_root()
    problems: list[str] = []
    for name in REQUIRED_FIELDS:
        value = getattr(entry, name)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"field '{name}' is empty")
    try:
        check_tag(entry.tag)
    except HubExportError as err:
        problems.append(str(err))
    if check_architecture:
        from timm.models import is_model

        from .. import models  # noqa: F401  (registers resnet*_cifar)

        if not is_model(entry.architecture):
            problems.append(f"architecture {entry.architecture!r} is not a timm model")
    if entry.method not in METHODS:
        problems.append(f"method {entry.method!r} is not one of {sorted(METHODS)}")
    if entry.crop not in CROP_MODES:
        problems.append(f"crop {entry.crop!r} is not one of {list(CROP_MODES)}")
    kind = str(entry.dataset).split(":", 1)[0].lower()
    if kind not in DATASET_KINDS:
        problems.append(f"dataset {entry.dataset!r} is not one of {list(DATASET_KINDS)} "
                        "(or a spec of one)")
    if not isinstance(entry.trained_here, bool):
        problems.append("trained_here must be true or false")
    # the recipe: exists, loads, and describes this model
    recipe_path = _recipe_path(entry, root)
    if not recipe_path.is_file():
        problems.append(f"recipe {entry.recipe!r} not found at {recipe_path}")
    else:
        try:
            recipe = load_recipe(str(recipe_path))
        except (ValueError, OSError) as err:
            problems.append(f"recipe {recipe_path} does not load: {err}")
        else:
            for key, value in (("model", entry.architecture), ("method", entry.method),
                               ("crop", entry.crop)):
                if recipe.get(key, _recipe_default(key)) != value:
                    problems.append(f"recipe {entry.recipe!r} has {key}="
                                    f"{recipe.get(key, _recipe_default(key))!r}, the entry "
                                    f"{value!r}")
    # input
    inp = entry.input if isinstance(entry.input, Mapping) else {}
    size = inp.get("input_size")
    if not (isinstance(size, Sequence) and len(size) == 3 and all(_is_number(v) for v in size)):
        problems.append("input.input_size must be [channels, height, width]")
    for key in ("mean", "std"):
        value = inp.get(key)
        if not (isinstance(value, Sequence) and value and all(_is_number(v) for v in value)):
            problems.append(f"input.{key} must be a list of numbers")
    # weights
    weights = entry.weights if isinstance(entry.weights, Mapping) else {}
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
    # measurements
    if not isinstance(entry.metrics, list):
        problems.append("metrics must be a list (empty when nothing was measured)")
    else:
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


def _recipe_default(key: str) -> Any:
    from ..config import TrainConfig

    return getattr(TrainConfig(), key)


def _bundled_problems(entry: ZooEntry, folder: Path, weights: Mapping[str, Any],
                      check_sha: bool) -> list[str]:
    import json

    from .export import CONFIG_NAME, WEIGHTS_NAME

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


# --------------------------------------------------------------------------------------
# timm's registry
# --------------------------------------------------------------------------------------


def zoo_pretrained_cfg(entry: ZooEntry, root: Path | None = None) -> dict[str, Any]:
    """The pretrained_cfg of an entry: the bundled config.json's (plus ``file``), or the
    entry's ``input`` (plus ``hf_hub_id``) for weights that are only on the Hub."""
    import json

    from .export import CONFIG_NAME, PAPER_ARXIV, PAPER_NAME, WEIGHTS_NAME

    cfg: dict[str, Any] = {
        "num_classes": 0, "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bilinear",
        "license": entry.license, "paper_ids": PAPER_ARXIV, "paper_name": PAPER_NAME,
    }
    folder = entry.bundled_folder(root)
    if folder is not None and (folder / CONFIG_NAME).is_file():
        written = json.loads((folder / CONFIG_NAME).read_text()).get("pretrained_cfg") or {}
        cfg.update(written)
    cfg.update({k: v for k, v in entry.input.items() if k != "pool_size"})
    if folder is not None:
        cfg["file"] = str(folder / WEIGHTS_NAME)
    elif entry.hf_hub_id:
        cfg["hf_hub_id"] = entry.hf_hub_id
        cfg["hf_hub_filename"] = WEIGHTS_NAME
    cfg.setdefault("description", f"{entry.method} + {entry.crop} on {entry.dataset} "
                                  "(timm-ccrop zoo)")
    cfg["tag"] = entry.tag
    cfg["architecture"] = entry.architecture
    for key, value in list(cfg.items()):
        if isinstance(value, list):
            cfg[key] = tuple(value)
    return cfg


def add_pretrained_tag(architecture: str, tag: str, cfg: Mapping[str, Any]) -> str:
    """Add ``architecture.tag`` to timm's registry without touching its other tags.

    Raises ValueError when the architecture is unknown, when the cfg names no weights, or
    when the name is a tag timm already has that this module did not add.
    """
    import dataclasses
    from dataclasses import replace

    from timm.models import _registry as registry
    from timm.models._pretrained import PretrainedCfg

    if architecture not in registry._model_entrypoints:
        raise ValueError(f"timm has no architecture {architecture!r}")
    name = f"{architecture}.{tag}"
    existing = registry._model_pretrained_cfgs.get(name)
    if existing is not None and _REGISTERED.get(name) is not existing:
        raise ValueError(f"timm already has pretrained weights {name!r}; not replacing them")
    allowed = {f.name for f in dataclasses.fields(PretrainedCfg)}
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"unknown pretrained_cfg fields {unknown}")
    pretrained_cfg = replace(PretrainedCfg(**dict(cfg)), architecture=architecture, tag=tag)
    if not pretrained_cfg.has_weights:
        raise ValueError(f"{name}: the pretrained_cfg names no weights (file, url or hf_hub_id)")
    registry._model_pretrained_cfgs[name] = pretrained_cfg
    registry._model_has_pretrained.add(name)
    with_tags = registry._model_with_tags[architecture]
    if name not in with_tags:
        with_tags.append(name)
    default_cfg = registry._model_default_cfgs.get(architecture)
    if default_cfg is not None:  # appended: the architecture's default tag stays first
        if tag not in default_cfg.tags:
            default_cfg.tags.append(tag)
        default_cfg.cfgs[tag] = pretrained_cfg
        default_cfg.is_pretrained = True
    _REGISTERED[name] = pretrained_cfg
    return name


def remove_pretrained_tag(name: str) -> bool:
    """Undo :func:`add_pretrained_tag` for ``name``; timm's own tags are never removed."""
    from timm.models import _registry as registry

    if name not in _REGISTERED:
        return False
    ours = _REGISTERED.pop(name)
    architecture, tag = name.split(".", 1)
    if registry._model_pretrained_cfgs.get(name) is ours:
        del registry._model_pretrained_cfgs[name]
        registry._model_has_pretrained.discard(name)
        with_tags = registry._model_with_tags.get(architecture)
        if with_tags is not None and name in with_tags:
            with_tags.remove(name)
        default_cfg = registry._model_default_cfgs.get(architecture)
        if default_cfg is not None and default_cfg.cfgs.get(tag) is ours:
            del default_cfg.cfgs[tag]
            if tag in default_cfg.tags:
                default_cfg.tags.remove(tag)
            default_cfg.is_pretrained = any(c.has_weights for c in default_cfg.cfgs.values())
    return True


def registered_zoo_tags() -> list[str]:
    """The names this module added to timm's registry."""
    return sorted(_REGISTERED)


def register_zoo(entries: Iterable[ZooEntry] | None = None, root: Path | None = None) -> list[str]:
    """Register zoo entries as timm pretrained tags; returns the names registered.

    An entry whose weights are missing (bundled file absent, malformed Hub id), whose
    architecture timm does not know, or whose name timm already owns is skipped with a
    warning. Calling it again re-registers the same names (idempotent).
    """
    from .export import WEIGHTS_NAME, HubExportError, check_repo_id

    root = root or zoo_root()
    if entries is None:
        index = root / INDEX_NAME
        if not index.is_file():
            return []
        try:
            entries = load_zoo(index)
        except (ValueError, OSError) as err:
            warnings.warn(f"timm-ccrop zoo: cannot read {index}: {err}", stacklevel=2)
            return []
    names = []
    for entry in entries:
        folder = entry.bundled_folder(root)
        reason = None
        if folder is not None and not (folder / WEIGHTS_NAME).is_file():
            reason = f"its weights {folder / WEIGHTS_NAME} do not exist"
        elif folder is None:
            try:
                check_repo_id(str(entry.hf_hub_id or ""))
            except HubExportError as err:
                reason = f"no bundled weights and {err}"
        if reason is None:
            try:
                names.append(add_pretrained_tag(entry.architecture, entry.tag,
                                                zoo_pretrained_cfg(entry, root)))
                continue
            except (ValueError, TypeError, OSError) as err:
                reason = str(err)
        warnings.warn(f"timm-ccrop zoo: not registering {entry.name}: {reason}", stacklevel=2)
    return names


# --------------------------------------------------------------------------------------
# The table of `timm-ccrop zoo`
# --------------------------------------------------------------------------------------


def format_zoo_table(entries: Sequence[ZooEntry]) -> str:
    """The zoo as a plain-text table."""
    header = ("model", "method", "crop", "data", "kNN top-1", "linear top-1", "weights",
              "trained here")
    rows = [header]
    for entry in entries:
        knn, linear = entry.metric("knn"), entry.metric("linear")
        weights = entry.hf_hub_id or ("bundled" if entry.weights.get("bundled") else "-")
        rows.append((entry.name, entry.method, entry.crop, entry.dataset,
                     f"{knn:.2f}" if knn is not None else "-",
                     f"{linear:.2f}" if linear is not None else "-", weights,
                     "yes" if entry.trained_here else "no"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


register_zoo()
