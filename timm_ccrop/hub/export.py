"""Hugging Face Hub: export backbones in timm's layout, convert official checkpoints, publish.

An exported folder is what ``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` and
``timm.create_model('local-dir:DIR', pretrained=True)`` read:

* ``config.json``: the architecture (possibly one of our CIFAR-stem variants, registered
  by ``import timm_ccrop``), ``num_features``, ``model_args`` and a ``pretrained_cfg``
  written field by field from our own values: nothing is inherited from timm's registry
  default of the architecture (a from-scratch ``resnet18`` would otherwise claim timm's
  ``a1_in1k`` tag, its paper, its crop_pct and test size).
* ``model.safetensors``: the backbone only (no projector, predictor, momentum encoder,
  queue), no pickle.
* ``README.md``: a model card with Hub front-matter, the recipe, the measured numbers
  (``eval.json`` of ``timm-ccrop eval``, only when it evaluated these very weights), the
  loading code and the citation.

Folders are written into a temporary sibling and renamed into place, so a failure never
leaves a half-written folder. :func:`push_folder` validates a folder and uploads it with
``huggingface_hub``; on any network or authentication failure it raises
:class:`PushError` and leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..backbones import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    create_backbone,
    sha256_file,
    state_dict_sha256,
    strip_wrapper_prefixes,
)
from ..boxes import from_official
from ..config import TrainConfig
from ..localize import localization_defaults
from ..runs import (
    list_checkpoints,
    read_checkpoint,
)

__all__ = [
    "BIBTEX",
    "OFFICIAL_DATASETS",
    "OFFICIAL_STATE_KEYS",
    "PAPER_ARXIV",
    "PAPER_NAME",
    "HubExportError",
    "PushError",
    "PushResult",
    "card_metadata",
    "convert_official_state_dict",
    "export_backbone",
    "export_official",
    "export_run",
    "official_architecture",
    "push_folder",
    "validate_export",
]

PAPER_NAME = "Crafting Better Contrastive Views for Siamese Representation Learning"
PAPER_ARXIV = "arXiv:2202.03278"
PAPER_URL = "https://arxiv.org/abs/2202.03278"
OFFICIAL_REPO_URL = "https://github.com/xyupeng/ContrastiveCrop"
BIBTEX = """@inproceedings{peng2022crafting,
  title     = {Crafting Better Contrastive Views for Siamese Representation Learning},
  author    = {Peng, Xiangyu and Wang, Kai and Zhu, Zheng and Wang, Mang and You, Yang},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  year      = {2022}
}"""

CARD_NAME = "README.md"
#: Pickle-based weight files: never exported, never uploaded.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt")

#: Hub dataset ids for the card's front-matter, by dataset kind of a data spec.
HUB_DATASETS = {
    "cifar10": "uoft-cs/cifar10",
    "cifar100": "uoft-cs/cifar100",
    "stl10": "tanganke/stl10",
    "tiny-imagenet": "zh-plus/tiny-imagenet",
    "imagenet": "ILSVRC/imagenet-1k",
}
_DATASET_NAMES = {
    "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "stl10": "STL-10",
    "tiny-imagenet": "Tiny ImageNet", "imagenet": "ImageNet-1k",
    "synthetic": "timm-ccrop's built-in synthetic objects", "folder": "an image folder",
}
_CROP_NAMES = {
    "ccrop": "ContrastiveCrop (semantic-aware localization + center-suppressed sampling)",
    "simccrop": "SimCCrop (fixed centre box, center-suppressed sampling)",
    "rcrop": "RandomResizedCrop (the baseline)",
}
_METHOD_NAMES = {"simclr": "SimCLR", "moco": "MoCo v2", "byol": "BYOL", "simsiam": "SimSiam"}


class HubExportError(ValueError):
    """A folder, checkpoint or argument that cannot be exported or pushed (nothing written)."""


class PushError(RuntimeError):
    """The Hub could not be reached or refused the upload; the local folder is unchanged."""


# --------------------------------------------------------------------------------------
# pretrained_cfg: every field set by us
# --------------------------------------------------------------------------------------


def _pretrained_cfg_fields() -> tuple[str, ...]:
    import dataclasses

    from timm.models._pretrained import PretrainedCfg

    return tuple(f.name for f in dataclasses.fields(PretrainedCfg))


def full_pretrained_cfg(
    backbone: nn.Module,
    *,
    architecture: str,
    tag: str,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    license: str = "apache-2.0",
    description: str | None = None,
    origin_url: str | None = None,
    notes: Sequence[str] | None = None,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
) -> dict[str, Any]:
    """A value for EVERY field of timm's ``PretrainedCfg``: ours, or None.

    Only ``first_conv`` and ``classifier`` (module names, facts of the architecture) come
    from the backbone's current cfg; everything that describes weights (tag, source,
    paper, preprocessing, test-time size...) is ours, so timm's registry default of the
    architecture cannot leak into the export.
    """
    current = getattr(backbone, "pretrained_cfg", None) or {}
    ours: dict[str, Any] = {
        "architecture": architecture,
        "tag": tag,
        "custom_load": False,
        "input_size": tuple(int(v) for v in input_size),
        "fixed_input_size": bool(current.get("fixed_input_size", False)),
        "interpolation": interpolation,
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "num_classes": 0,
        "pool_size": None,
        "first_conv": current.get("first_conv"),
        "classifier": current.get("classifier"),
        "license": license,
        "description": description,
        "origin_url": origin_url,
        "paper_name": PAPER_NAME,
        "paper_ids": PAPER_ARXIV,
        "notes": tuple(notes) if notes else None,
    }
    return {name: ours.get(name) for name in _pretrained_cfg_fields()}


#: Fields of config.json's pretrained_cfg that timm computes from the live model.
_COMPUTED_FIELDS = ("fixed_input_size", "first_conv", "custom_load", "num_classes")


@contextlib.contextmanager
def _swapped_pretrained_cfg(model: nn.Module, cfg: dict[str, Any]) -> Iterator[None]:
    had = "pretrained_cfg" in vars(model)
    previous = getattr(model, "pretrained_cfg", None)
    model.pretrained_cfg = dict(cfg)
    try:
        yield
    finally:
        if had:
            model.pretrained_cfg = previous
        else:
            with contextlib.suppress(AttributeError):
                del model.pretrained_cfg


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _write_weights_and_config(backbone: nn.Module, folder: Path, cfg: dict[str, Any],
                              model_args: dict[str, Any] | None) -> dict[str, Any]:
    """timm's ``save_for_hf`` (safetensors only), then config.json's pretrained_cfg set to
    exactly ``cfg`` (its non-null fields) plus the fields timm computes from the model."""
    from timm.models import save_for_hf

    data_config = {key: cfg[key] for key in ("input_size", "interpolation", "crop_pct",
                                             "crop_mode", "mean", "std")}
    with _swapped_pretrained_cfg(backbone, cfg):
        save_for_hf(backbone, folder, model_config={"architecture": cfg["architecture"]},
                    model_args=model_args or None, safe_serialization=True,
                    data_config=data_config)
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text())
    written = config.get("pretrained_cfg", {})
    final = {k: v for k, v in cfg.items() if v is not None and k != "architecture"}
    final.update({k: written[k] for k in _COMPUTED_FIELDS if k in written})
    final["pool_size"] = None  # always kept by timm, even when null
    final["classifier"] = cfg.get("classifier")
    config["pretrained_cfg"] = _jsonable(final)
    config["architecture"] = cfg["architecture"]
    path.write_text(json.dumps(config, indent=2) + "\n")
    for stray in folder.iterdir():  # save_for_hf writes only these two; be sure
        if stray.name not in (CONFIG_NAME, WEIGHTS_NAME):
            stray.unlink()
    return config


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_permissions(folder: Path) -> None:
    """mkdtemp makes a 0700 folder (and some writers 0600 files): give the export the
    usual permissions (0755 / 0644 under the process umask)."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o644) & ~mask)


def _replace_folder(new: Path, target: Path, overwrite: bool) -> None:
    """Rename ``new`` to ``target``; an existing target is swapped out only at the end."""
    _normal_permissions(new)
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise HubExportError(f"{target} already exists; pass overwrite=True (--overwrite) "
                                 "to replace it")
        if not target.is_dir() or target.is_symlink():
            raise HubExportError(f"{target} exists and is not a folder; not replacing it")
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


@contextlib.contextmanager
def _staging_folder(target: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder next to ``target`` (same file system), removed on failure.
    An existing ``target`` is refused up front unless ``overwrite``."""
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise HubExportError(f"{target} already exists; pass overwrite=True (--overwrite) "
                             "to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Measured numbers: eval.json (timm-ccrop eval) and the trainer's kNN monitor
# --------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One measured accuracy of these weights."""

    protocol: str  # 'knn' or 'linear'
    split: str
    top1: float
    top5: float | None
    dataset: str
    details: str
    command: str


def _eval_command(report: Mapping[str, Any], backbone_text: str | None = None) -> str:
    settings = report.get("settings") or {}
    parts = ["timm-ccrop", "eval", "--backbone",
             str(backbone_text or settings.get("backbone") or "DIR")]
    protocol = settings.get("protocol", "both")
    options = [("data", "--data"), ("protocol", "--protocol"), ("train_split", "--train-split"),
               ("test_split", "--test-split"), ("val_fraction", "--val-fraction"),
               ("image_size", "--image-size"), ("seed", "--seed")]
    if protocol in ("knn", "both"):
        options += [("knn_k", "--knn-k"), ("knn_t", "--knn-t")]
    if protocol in ("linear", "both"):
        options += [("linear_mode", "--linear-mode"), ("probe_recipe", "--probe-recipe"),
                    ("epochs", "--epochs"), ("lr", "--lr")]
    for key, flag in options:
        value = settings.get(key)
        if value is None or (key == "val_fraction" and not value):
            continue
        parts += [flag, str(value)]
    if protocol in ("linear", "both") and settings.get("augment") is False:
        parts.append("--no-augment")
    return " ".join(parts)


def measurements_from_eval(report: Mapping[str, Any]) -> list[Measurement]:
    """The kNN / linear rows of an ``eval.json`` report."""
    data = report.get("data") or {}
    dataset = str(data.get("spec", "?"))
    command = _eval_command(report)
    rows = []
    knn = report.get("knn")
    if isinstance(knn, Mapping):
        details = f"k={knn.get('k')}, T={knn.get('temperature')}"
        for split in ("test", "val"):
            acc = knn.get(split)
            if isinstance(acc, Mapping) and "top1" in acc:
                rows.append(Measurement("knn", split, float(acc["top1"]),
                                        _maybe_float(acc.get("top5")), dataset, details, command))
    linear = report.get("linear")
    if isinstance(linear, Mapping):
        recipe = linear.get("recipe") or {}
        details = (f"{linear.get('mode', '?')} mode, {recipe.get('epochs', '?')} epochs, "
                   "final epoch")
        for split in ("test", "val"):
            acc = linear.get(split)
            if isinstance(acc, Mapping) and "top1" in acc:
                rows.append(Measurement("linear", split, float(acc["top1"]),
                                        _maybe_float(acc.get("top5")), dataset, details,
                                        command))
    return rows


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _matching_eval_reports(candidates: Sequence[Path], hashes: set[str]) -> list[dict[str, Any]]:
    """eval.json reports among ``candidates`` that evaluated weights with one of ``hashes``."""
    reports = []
    seen: set[Path] = set()
    for path in candidates:
        path = path.resolve()
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


def _monitor_record(run: Path, epoch: int | None) -> dict[str, Any] | None:
    """The trainer's last kNN-monitor record (metrics.jsonl), if it is of ``epoch``."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "knn_top1" in record:
                last = record
    if last is None or (epoch is not None and last.get("epoch") != epoch):
        return None
    return last


# --------------------------------------------------------------------------------------
# The model card
# --------------------------------------------------------------------------------------


@dataclass
class CardInfo:
    """What the model card says."""

    architecture: str
    tag: str
    method: str
    crop: str
    dataset_kind: str
    dataset_spec: str
    num_features: int
    num_parameters: int
    input_size: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    license: str
    crop_params: dict[str, Any] = field(default_factory=dict)
    recipe_yaml: str | None = None
    recipe_note: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    monitor: dict[str, Any] | None = None
    monitor_bank: int | None = None
    repo_id: str | None = None
    provenance: str = ""
    ours: bool = False  # the architecture is registered by timm_ccrop


def card_front_matter(info: CardInfo) -> dict[str, Any]:
    """The card's YAML front-matter (Hub metadata)."""
    import yaml  # noqa: F401  (checked importable: the caller dumps it)

    tags = ["image-feature-extraction", "timm", "self-supervised", "contrastivecrop",
            info.method, info.crop, "timm-ccrop"]
    meta: dict[str, Any] = {
        "library_name": "timm",
        "pipeline_tag": "image-feature-extraction",
        "license": info.license,
        "tags": list(dict.fromkeys(tags)),
    }
    hub_dataset = HUB_DATASETS.get(info.dataset_kind)
    meta["datasets"] = [hub_dataset] if hub_dataset else []
    if info.measurements:
        results = []
        for row in info.measurements:
            metrics = [{"type": "accuracy", "name": f"{_protocol_name(row.protocol)} top-1",
                        "value": round(row.top1, 2)}]
            if row.top5 is not None:
                metrics.append({"type": "top_5_accuracy",
                                "name": f"{_protocol_name(row.protocol)} top-5",
                                "value": round(row.top5, 2)})
            results.append({
                "task": {"type": "image-classification",
                         "name": f"{_protocol_name(row.protocol)} on frozen features"},
                "dataset": {"type": hub_dataset or info.dataset_kind,
                            "name": _DATASET_NAMES.get(info.dataset_kind, info.dataset_kind),
                            "split": row.split},
                "metrics": metrics,
            })
        meta["model-index"] = [{"name": f"{info.architecture}.{info.tag}", "results": results}]
    return meta


def _protocol_name(protocol: str) -> str:
    return {"knn": "kNN", "linear": "linear probe"}.get(protocol, protocol)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def render_card(info: CardInfo) -> str:
    """The README.md model card."""
    import yaml

    front = yaml.safe_dump(card_front_matter(info), sort_keys=False, allow_unicode=True)
    name = f"{info.architecture}.{info.tag}"
    method = _METHOD_NAMES.get(info.method, info.method)
    dataset = _DATASET_NAMES.get(info.dataset_kind, info.dataset_kind)
    hub_id = info.repo_id or "ORG/NAME"
    lines = [f"---\n{front}---", "", f"# {name}", ""]
    lines += [
        f"A {info.architecture} feature backbone pretrained without labels with {method} and "
        f"{_CROP_NAMES.get(info.crop, info.crop)} ([ContrastiveCrop]({PAPER_URL}), "
        f"Peng et al., CVPR 2022) on {dataset}. It has no classifier "
        f"(`num_classes=0`): the forward pass returns {info.num_features} pooled features.",
        "",
    ]
    if info.provenance:
        lines += [info.provenance, ""]
    lines += ["## Model details", "",
              f"- **Architecture:** `{info.architecture}`"
              + (" (a CIFAR-stem ResNet registered with timm by `import timm_ccrop`: 3x3 "
                 "stride-1 stem, no max-pool)" if info.ours else " (timm)"),
              f"- **Parameters:** {info.num_parameters / 1e6:.2f} M; **features:** "
              f"{info.num_features}",
              f"- **Method:** {method}",
              f"- **Crop mode:** {info.crop}"]
    if info.crop_params:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in info.crop_params.items())
        lines.append(f"- **Crop parameters:** {params}")
    lines += [f"- **Pretraining data:** {dataset} (`{info.dataset_spec}`)",
              f"- **Input:** {info.input_size[-1]}x{info.input_size[-2]} px, mean "
              f"{list(info.mean)}, std {list(info.std)}",
              f"- **Paper:** [{PAPER_NAME}]({PAPER_URL}) ({PAPER_ARXIV})",
              f"- **License:** {info.license}"]
    for key, value in info.training.items():
        lines.append(f"- **{key}:** {value}")
    lines += ["", "## Results", ""]
    if info.measurements:
        lines += ["Measured on the frozen backbone with `timm-ccrop eval` (these exact weights: "
                  "the report's sha256 matches):", "",
                  "| protocol | dataset | split | top-1 | top-5 | settings |",
                  "|---|---|---|---|---|---|"]
        for row in info.measurements:
            lines.append(f"| {_protocol_name(row.protocol)} | `{row.dataset}` | {row.split} | "
                         f"{row.top1:.2f} | {_fmt(row.top5)} | {row.details} |")
        commands = list(dict.fromkeys(row.command for row in info.measurements))
        lines += ["", "Measured with:", "", "```bash", *commands, "```"]
    else:
        lines.append("No evaluation of these weights was recorded (no `eval.json` from "
                     "`timm-ccrop eval` for them); no accuracy is claimed.")
    if info.monitor:
        top5 = info.monitor.get("knn_top5")
        lines += ["", f"Training-time kNN monitor (the trainer's `metrics.jsonl`, epoch "
                      f"{info.monitor.get('epoch')}, on a subset of at most "
                      f"{info.monitor_bank or 'all'} train images): top-1 "
                      f"{float(info.monitor['knn_top1']):.2f}"
                  + (f", top-5 {float(top5):.2f}" if top5 is not None else "") + "."]
    lines += ["", "## How to use", "", "```python", "import timm"]
    if info.ours:
        lines.append(f"import timm_ccrop  # the timm-ccrop package: registers "
                     f"{info.architecture} with timm")
    lines += ["",
              f'model = timm.create_model("hf-hub:{hub_id}", pretrained=True).eval()',
              "# or from a local copy: timm.create_model(\"local-dir:PATH\", pretrained=True)",
              "data_config = timm.data.resolve_model_data_config(model)",
              "transform = timm.data.create_transform(**data_config, is_training=False)",
              "features = model(transform(image).unsqueeze(0))  "
              f"# (1, {info.num_features})",
              "```", ""]
    lines += ["## Training recipe", ""]
    if info.recipe_note:
        lines += [info.recipe_note, ""]
    if info.recipe_yaml:
        lines += ["```yaml", info.recipe_yaml.rstrip(), "```", ""]
    lines += ["## Citation", "", "```bibtex", BIBTEX, "```", ""]
    return "\n".join(lines)


def card_metadata(text: str) -> dict[str, Any] | None:
    """The YAML front-matter of a model card, or None when it has none (or it is broken)."""
    import yaml

    match = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", text, flags=re.S)
    if not match:
        return None
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def card_measurements(meta: Mapping[str, Any] | None) -> list[float]:
    """The metric values in a card's ``model-index``."""
    values = []
    for model in (meta or {}).get("model-index") or []:
        for result in (model or {}).get("results") or []:
            for metric in (result or {}).get("metrics") or []:
                value = (metric or {}).get("value")
                if isinstance(value, (int, float)) and math.isfinite(value):
                    values.append(float(value))
    return values


# --------------------------------------------------------------------------------------
# Export: trainer backbones and run folders
# --------------------------------------------------------------------------------------


def _tag_for(config: Any) -> str:
    return f"{config.crop}_{config.method}"


def _run_description(config: Any) -> str:
    method = _METHOD_NAMES.get(config.method, config.method)
    return (f"{method} + {config.crop} pretraining of {config.model} on {config.data} "
            "with timm-ccrop (ContrastiveCrop)")


def _config_pretrained_cfg(backbone: nn.Module, config: Any, license: str) -> dict[str, Any]:
    mean, std = config.normalisation()
    size = config.resolved_image_size()
    return full_pretrained_cfg(
        backbone, architecture=config.model, tag=_tag_for(config), input_size=(3, size, size),
        mean=mean, std=std, license=license, description=_run_description(config),
    )


def export_backbone(backbone: nn.Module, folder: str | Path, config: Any, *,
                    card: str | None = None, overwrite: bool = True,
                    license: str = "apache-2.0") -> Path:
    """Write ``backbone`` (trained with ``config``, a :class:`TrainConfig`) to ``folder``:
    config.json + model.safetensors (+ README.md when ``card`` is given), atomically.

    This is what the trainer writes to ``RUN/backbone`` at the end of a run.
    """
    folder = Path(folder)
    cfg = _config_pretrained_cfg(backbone, config, license)
    with _staging_folder(folder, overwrite) as staging:
        _write_weights_and_config(backbone, staging, cfg, dict(config.model_kwargs) or None)
        if card is not None:
            (staging / CARD_NAME).write_text(card)
        _replace_folder(staging, folder, overwrite)
    return folder


def _is_ours(architecture: str) -> bool:
    return architecture in models.CIFAR_MODEL_NAMES


def _dataset_kind(spec: str, override: str | None = None) -> str:
    if override:
        return override
    kind = str(spec).split(":", 1)[0].strip().lower()
    return kind or "unknown"


def _crop_params(config: Any, backbone: nn.Module) -> dict[str, Any]:
    if config.crop == "rcrop":
        return {}
    params: dict[str, Any] = {"alpha": config.resolved_alpha()}
    if config.crop == "ccrop":
        defaults = localization_defaults(backbone)
        warmup, interval = config.resolved_schedule()
        params.update({
            "box_source": config.box_source,
            "threshold": config.threshold if config.threshold is not None
            else f"{defaults.threshold} (family default)",
            "reduction": config.reduction if config.reduction is not None
            else f"{defaults.reduction} (family default)",
            "stage": config.stage,
            "warmup_epochs": warmup,
            "loc_interval": interval,
        })
    return params


def _load_run(run: Path, checkpoint: Path | None) -> tuple[Any, dict[str, torch.Tensor],
                                                            int | None, bool, str | None, Path]:
    """``(config, backbone_state, epoch, partial, config_yaml_text, run_folder)``."""
    import yaml


    if run.is_file():
        checkpoint, run = run, run.parent
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    config_path = run / "config.yaml"
    config_text = config_path.read_text() if config_path.is_file() else None
    state: dict[str, Any] | None = None
    if checkpoint is not None or list_checkpoints(run):
        state, _ = read_checkpoint(checkpoint if checkpoint is not None else run)
    values = None
    if state is not None and isinstance(state.get("config"), dict):
        values = state["config"]
    elif config_text is not None:
        values = yaml.safe_load(config_text) or {}
    if values is None:
        raise HubExportError(f"{run} has neither config.yaml nor a checkpoint with its config; "
                             "cannot tell which architecture was trained")
    config = TrainConfig.from_dict(values)
    if config_text is None:
        config_text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    if state is not None:
        model_state = state.get("model")
        if not isinstance(model_state, dict):
            raise HubExportError(f"checkpoint of {run} has no 'model' state dict")
        backbone_state = {k[len("backbone."):]: v for k, v in model_state.items()
                          if k.startswith("backbone.")}
        if not backbone_state:
            raise HubExportError(f"checkpoint of {run} has no 'backbone.*' weights")
        epoch = state.get("epoch")
        return (config, backbone_state, int(epoch) if epoch is not None else None,
                bool(state.get("partial", False)), config_text, run)
    exported = run / "backbone" / WEIGHTS_NAME
    if exported.is_file():
        from safetensors.torch import load_file

        return config, load_file(str(exported)), config.epochs, False, config_text, run
    raise FileNotFoundError(f"{run} holds no checkpoint-epoch*.pt and no backbone/{WEIGHTS_NAME}")


def export_run(run: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
               overwrite: bool = False, repo_id: str | None = None,
               dataset: str | None = None, license: str = "apache-2.0",
               tag: str | None = None, eval_reports: Sequence[str | Path] = ()) -> Path:
    """Export a training run's backbone to ``out`` in timm's Hub layout, with a model card.

    Args:
        run: a run folder of ``timm-ccrop pretrain`` (its newest valid checkpoint, else its
            ``backbone/``), or a checkpoint file.
        out: the folder to write (config.json, model.safetensors, README.md).
        checkpoint: a specific ``checkpoint-epoch*.pt`` of the run.
        overwrite: replace an existing ``out`` (only once the new folder is complete).
        repo_id: the Hub id the card's loading code names.
        dataset: dataset kind for the card (e.g. ``imagenet`` for a ``folder:`` spec).
        tag: the pretrained tag in config.json (default ``{crop}_{method}``).
        eval_reports: further ``eval.json`` files; like the run's own ones (``RUN/eval.json``,
            ``RUN/backbone/eval.json``, ``OUT/eval.json``) they are used only when they
            evaluated these very weights.
    """
    out = Path(out)
    config, state, epoch, partial, config_text, run_dir = _load_run(
        Path(run), Path(checkpoint) if checkpoint is not None else None)
    backbone = create_backbone(config.model, **config.model_kwargs)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise HubExportError(f"the run's backbone weights do not fit {config.model}: missing "
                             f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
    backbone.eval()
    cfg = _config_pretrained_cfg(backbone, config, license)
    if tag:
        cfg["tag"] = check_tag(tag)
    mean, std = config.normalisation()
    size = config.resolved_image_size()
    kind = _dataset_kind(config.data, dataset)
    method_name = _METHOD_NAMES.get(config.method, config.method)
    training = {
        "Epochs": f"{epoch} of {config.epochs}" + (" (stopped early, mid-run checkpoint)"
                                                    if partial else "")
        if epoch is not None else str(config.epochs),
        "Batch size": config.batch_size,
        "Optimizer": f"{config.optimizer}, lr {config.lr}, weight decay {config.weight_decay}",
    }
    candidates = [run_dir / "eval.json", run_dir / "backbone" / "eval.json", out / "eval.json",
                  *(Path(p) for p in eval_reports)]
    with _staging_folder(out, overwrite) as staging:
        _write_weights_and_config(backbone, staging, cfg, dict(config.model_kwargs) or None)
        hashes = {sha256_file(staging / WEIGHTS_NAME)}
        state_hash = state_dict_sha256(backbone.state_dict())
        if state_hash:
            hashes.add(state_hash)
        reports = _matching_eval_reports(candidates, hashes)
        measurements = [row for report in reports for row in measurements_from_eval(report)]
        info = CardInfo(
            architecture=config.model, tag=cfg["tag"], method=config.method, crop=config.crop,
            dataset_kind=kind, dataset_spec=config.data,
            num_features=int(getattr(backbone, "num_features", 0)),
            num_parameters=sum(p.numel() for p in backbone.parameters()),
            input_size=(3, size, size), mean=tuple(mean), std=tuple(std), license=license,
            crop_params=_crop_params(config, backbone), recipe_yaml=config_text,
            recipe_note="The run's full resolved config (its `config.yaml`). To reproduce, "
                        "save it as `recipe.yaml` and run `timm-ccrop pretrain --recipe "
                        "recipe.yaml --output runs/NAME` (the dataset path under `data` must "
                        "point at your copy).",
            training=training, measurements=measurements,
            monitor=_monitor_record(run_dir, epoch) if config.knn_every else None,
            monitor_bank=config.knn_max_train,
            repo_id=repo_id, ours=_is_ours(config.model),
            provenance=f"Trained with timm-ccrop: {method_name} + {config.crop} pretraining "
                       f"of {config.model} on `{config.data}`.",
        )
        (staging / CARD_NAME).write_text(render_card(info))
        _replace_folder(staging, out, overwrite)
    return out


# --------------------------------------------------------------------------------------
# Official ContrastiveCrop checkpoints (github.com/xyupeng/ContrastiveCrop)
# --------------------------------------------------------------------------------------

#: Checkpoint key holding the model's state dict, by method.
OFFICIAL_STATE_KEYS = {"simclr": "simclr_state", "moco": "moco_state", "byol": "byol_state",
                       "simsiam": "simsiam_state"}
#: Prefix of the online encoder inside each official method wrapper (after 'module.').
_OFFICIAL_ENCODER = {"simclr": "", "moco": "encoder_q.", "byol": "encoder_q.",
                     "simsiam": "encoder."}
#: Official normalisation and input size per dataset (the configs' mean/std; eval size).
OFFICIAL_DATASETS: dict[str, dict[str, Any]] = {
    "cifar10": {"size": 32, "mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)},
    "cifar100": {"size": 32, "mean": (0.5071, 0.4867, 0.4408),
                 "std": (0.2675, 0.2565, 0.2761)},
    "stl10": {"size": 96, "mean": (0.4406, 0.4273, 0.3858), "std": (0.2312, 0.2265, 0.2237)},
    "tiny-imagenet": {"size": 64, "mean": (0.4802, 0.4481, 0.3975),
                      "std": (0.2302, 0.2265, 0.2262)},
    "imagenet": {"size": 224, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
#: Backbone keys of the official ResNet (models/resnet.py); identical names in timm's ResNet.
_OFFICIAL_BACKBONE_KEY = re.compile(
    rf"^(conv1\.weight|bn1\.{_BN}|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}"
    rf"|downsample\.0\.weight|downsample\.1\.{_BN}))$"
)


def official_method(checkpoint: Mapping[str, Any]) -> str:
    """The method of an official checkpoint, from its state key (``simclr_state``, ...)."""
    found = [m for m, key in OFFICIAL_STATE_KEYS.items() if key in checkpoint]
    if len(found) != 1:
        raise HubExportError(
            "not an official ContrastiveCrop checkpoint: expected exactly one of "
            f"{sorted(OFFICIAL_STATE_KEYS.values())}, found keys {sorted(map(str, checkpoint))}")
    return found[0]


def convert_official_state_dict(state: Mapping[str, torch.Tensor],
                                method: str) -> dict[str, torch.Tensor]:
    """Map an official method state dict to timm ResNet backbone keys.

    Drops DDP's ``module.`` prefix, keeps the online encoder (SimCLR: the model itself;
    MoCo/BYOL: ``encoder_q``; SimSiam: ``encoder``) without its ``fc`` projector, and
    drops the momentum encoder, the predictor and the queue. The official ResNet names
    its layers as timm does (``conv1``, ``bn1``, ``layerN.i.convK/bnK``,
    ``downsample.0/1``), so the kept keys map one to one.
    """
    if method not in _OFFICIAL_ENCODER:
        raise HubExportError(f"unknown method {method!r}; choose from {sorted(_OFFICIAL_ENCODER)}")
    prefix = _OFFICIAL_ENCODER[method]
    out: dict[str, torch.Tensor] = {}
    strays = []
    for raw_key, value in state.items():
        key = strip_wrapper_prefixes(str(raw_key))
        if prefix and not key.startswith(prefix):
            continue  # encoder_k, predictor, queue, queue_ptr
        key = key[len(prefix):]
        if key.startswith("fc."):
            continue  # the projector (the official models put it in place of fc)
        if not _OFFICIAL_BACKBONE_KEY.match(key):
            strays.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            raise HubExportError(f"official key {raw_key!r} is not a tensor")
        out[key] = value
    if strays:
        raise HubExportError(f"unexpected keys in the official {method} encoder: {strays[:8]}")
    if "conv1.weight" not in out:
        raise HubExportError(f"no backbone weights found in the official {method} state dict "
                             f"(expected keys like 'module.{prefix}conv1.weight')")
    return out


def official_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """The timm architecture of a converted official backbone: ``resnet18_cifar`` (3x3
    stem, the small-dataset configs), ``resnet34/50_cifar``, or timm's ``resnet18/34/50/
    101/152`` for the 7x7-stem ImageNet ResNets."""
    conv1 = state["conv1.weight"]
    if conv1.shape[0] != 64:
        raise HubExportError(f"unsupported official ResNet: stem width {conv1.shape[0]} != 64")
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(
        len({key.split(".")[1] for key in state if key.startswith(f"layer{n}.")})
        for n in range(1, 5)
    )
    depths = {((2, 2, 2, 2), False): 18, ((3, 4, 6, 3), False): 34, ((3, 4, 6, 3), True): 50,
              ((3, 4, 23, 3), True): 101, ((3, 8, 36, 3), True): 152}
    depth = depths.get((blocks, bottleneck))
    if depth is None:
        raise HubExportError(f"unsupported official ResNet: blocks {blocks}, "
                             f"{'bottleneck' if bottleneck else 'basic'} blocks")
    kernel = conv1.shape[-1]
    if kernel == 3:
        if depth not in (18, 34, 50):
            raise HubExportError(f"no CIFAR-stem ResNet-{depth} architecture in timm_ccrop")
        return f"resnet{depth}_cifar"
    if kernel == 7:
        return f"resnet{depth}"
    raise HubExportError(f"unsupported official ResNet stem: {kernel}x{kernel} conv")


def _load_official(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...
        raise HubExportError(f"cannot read {path} with torch.load(weights_only=True): "
                             f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
                             if str(err).strip() else f"cannot read {path}") from err
    if not isinstance(checkpoint, dict):
        raise HubExportError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def export_official(checkpoint: str | Path, out: str | Path, *, method: str | None = None,
                    dataset: str = "cifar10", crop: str | None = None, boxes: bool = False,
                    overwrite: bool = False, repo_id: str | None = None,
                    eval_reports: Sequence[str | Path] = ()) -> Path:
    """Convert an official ContrastiveCrop checkpoint (``last.pth``) to timm's Hub layout.

    Args:
        checkpoint: the official ``last.pth`` / ``epoch_N.pth`` (read with
            ``weights_only=True``; nothing is unpickled beyond tensors and containers).
        method: simclr, moco, byol or simsiam; default: from the checkpoint's state key.
        dataset: the pretraining dataset (its official mean/std and input size go into the
            config): cifar10, cifar100, stl10, tiny-imagenet or imagenet.
        crop: ccrop or rcrop; default: ccrop unless every box is still the initial whole
            image (the official rcrop configs never update the boxes).
        boxes: also write the final boxes as ``boxes.csv`` in timm-ccrop's convention
            (``timm_ccrop.boxes.from_official``).
    """
    from timm import create_model


    path, out = Path(checkpoint), Path(out)
    if dataset not in OFFICIAL_DATASETS:
        raise HubExportError(f"unknown dataset {dataset!r}; choose from "
                             f"{sorted(OFFICIAL_DATASETS)}")
    raw = _load_official(path)
    found = official_method(raw)
    if method is not None and method != found:
        raise HubExportError(f"--method {method} but {path} is a {found} checkpoint "
                             f"(it holds {OFFICIAL_STATE_KEYS[found]!r})")
    method = found
    state = convert_official_state_dict(raw[OFFICIAL_STATE_KEYS[method]], method)
    architecture = official_architecture(state)
    backbone = create_model(architecture, num_classes=0)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise HubExportError(f"converted weights do not load into {architecture}: "
                             f"{str(err).splitlines()[0]}") from err
    backbone.eval()
    official_boxes = raw.get("boxes")
    crop_given = crop is not None
    if crop is None:
        crop = "ccrop"
        if isinstance(official_boxes, torch.Tensor) and official_boxes.numel():
            initial = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=official_boxes.dtype)
            if torch.equal(official_boxes.reshape(-1, 4),
                           initial.expand(official_boxes.reshape(-1, 4).shape[0], 4)):
                crop = "rcrop"
    preset = OFFICIAL_DATASETS[dataset]
    size = preset["size"]
    epoch = raw.get("epoch")
    tag = f"{crop}_{method}_{dataset.replace('-', '')}_official"
    cfg = full_pretrained_cfg(
        backbone, architecture=architecture, tag=tag, input_size=(3, size, size),
        mean=preset["mean"], std=preset["std"], license="mit", origin_url=OFFICIAL_REPO_URL,
        description=f"Official ContrastiveCrop {_METHOD_NAMES[method]} ({crop}) checkpoint on "
                    f"{dataset}, converted to timm by timm-ccrop",
    )
    note = (f"Converted with `timm-ccrop export --official {path.name} --method {method} "
            f"--dataset {dataset}` from the official checkpoint"
            + (f" (epoch {epoch})" if epoch is not None else "") + ". The official repository "
            f"({OFFICIAL_REPO_URL}, MIT license) holds the training config; the crop mode "
            + (f"'{crop}' was given on the command line." if crop_given
               else f"'{crop}' was read off the checkpoint's boxes (all still the initial "
                    "whole image: rcrop, else ccrop)."))
    with _staging_folder(out, overwrite) as staging:
        _write_weights_and_config(backbone, staging, cfg, None)
        if boxes and isinstance(official_boxes, torch.Tensor):
            _write_boxes_csv(staging / "boxes.csv", official_boxes, size)
        hashes = {sha256_file(staging / WEIGHTS_NAME)}
        state_hash = state_dict_sha256(backbone.state_dict())
        if state_hash:
            hashes.add(state_hash)
        reports = _matching_eval_reports([out / "eval.json", *(Path(p) for p in eval_reports)],
                                         hashes)
        info = CardInfo(
            architecture=architecture, tag=tag, method=method, crop=crop, dataset_kind=dataset,
            dataset_spec=dataset, num_features=int(backbone.num_features),
            num_parameters=sum(p.numel() for p in backbone.parameters()),
            input_size=(3, size, size), mean=preset["mean"], std=preset["std"], license="mit",
            recipe_note=note,
            training={"Epochs": epoch if epoch is not None else "unknown"},
            measurements=[row for report in reports for row in measurements_from_eval(report)],
            repo_id=repo_id, ours=_is_ours(architecture),
            provenance=f"Weights of the official implementation ({OFFICIAL_REPO_URL}), "
                       "converted key by key (backbone only; projector, predictor, momentum "
                       "encoder and queue dropped).",
        )
        (staging / CARD_NAME).write_text(render_card(info))
        _replace_folder(staging, out, overwrite)
    return out


def _write_boxes_csv(path: Path, official: torch.Tensor, size: int) -> None:

    ours = from_official(official.reshape(-1, 4).float(), image_size=(size, size))
    lines = ["index,x0,y0,x1,y1"]
    lines += [f"{i},{row[0]:.6f},{row[1]:.6f},{row[2]:.6f},{row[3]:.6f}"
              for i, row in enumerate(ours.tolist())]
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------
# Validation and publishing
# --------------------------------------------------------------------------------------

_TAG = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def check_tag(tag: str) -> str:
    """A timm pretrained tag: lowercase letters, digits and '_' (no '.')."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise HubExportError(f"tag {tag!r} must be lowercase letters, digits and '_'")
    return tag


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` as the Hub accepts it, or HubExportError."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id \
            or "--" in repo_id or repo_id.endswith((".git", ".")):
        raise HubExportError(f"repo id {repo_id!r} is not of the form ORG/NAME (letters, "
                             "digits, '-', '_', '.'; no '--' or '..')")
    return repo_id


def _upload_files(folder: Path) -> list[Path]:
    """The files an upload sends: every regular, non-hidden file (recursively)."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def validate_export(folder: str | Path, require_metrics: bool = False) -> list[str]:
    """What is wrong with ``folder`` as a Hub model repo (empty list: nothing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems = []
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        problems.append(f"{CONFIG_NAME} is missing")
    else:
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as err:
            problems.append(f"{CONFIG_NAME} does not parse as JSON: {err}")
        else:
            if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
                problems.append(f"{CONFIG_NAME} has no 'architecture'")
            if not isinstance(config, dict) or not isinstance(config.get("pretrained_cfg"), dict):
                problems.append(f"{CONFIG_NAME} has no 'pretrained_cfg'")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        problems.append(f"{WEIGHTS_NAME} is missing")
    else:
        try:
            from safetensors.torch import load_file

            if not load_file(str(weights)):
                problems.append(f"{WEIGHTS_NAME} holds no tensors")
        except Exception as err:  # SafetensorError, OSError
            problems.append(f"{WEIGHTS_NAME} does not load: {type(err).__name__}: {err}")
    card = folder / CARD_NAME
    if not card.is_file():
        problems.append(f"{CARD_NAME} (the model card) is missing: write the folder with "
                        "`timm-ccrop export RUN_DIR --out DIR`")
    else:
        meta = card_metadata(card.read_text(errors="replace"))
        if meta is None:
            problems.append(f"{CARD_NAME} has no YAML front-matter (--- ... --- at the top)")
        else:
            for key in ("library_name", "license", "tags"):
                if not meta.get(key):
                    problems.append(f"{CARD_NAME} front-matter lacks '{key}'")
            if require_metrics and not card_measurements(meta):
                problems.append(f"{CARD_NAME} holds no measured numbers (no model-index "
                                "results): run `timm-ccrop eval` on these weights, then "
                                "export again so the card picks up eval.json")
    pickles = [str(p.relative_to(folder)) for p in folder.rglob("*")
               if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        problems.append(f"pickle-based files are not published: {', '.join(sorted(pickles))} "
                        "(the weights go as model.safetensors only)")
    return problems


@dataclass
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    repo_id: str
    files: list[tuple[str, int]]
    private: bool
    revision: str | None
    create_pr: bool
    dry_run: bool
    commit_url: str | None = None
    pr_url: str | None = None

    def summary(self) -> list[str]:
        total = sum(size for _, size in self.files)
        head = "would upload" if self.dry_run else "uploaded"
        where = f"https://huggingface.co/{self.repo_id}"
        lines = [f"{head} {len(self.files)} files ({_human(total)}) to {where}"
                 + (f" (revision {self.revision})" if self.revision else "")
                 + (" as a pull request" if self.create_pr else "")
                 + (" [private]" if self.private else "")]
        lines += [f"  {name:<40} {_human(size):>10}" for name, size in self.files]
        if self.commit_url:
            lines.append(f"commit: {self.commit_url}")
        if self.pr_url:
            lines.append(f"pull request: {self.pr_url}")
        if self.dry_run:
            lines.append("dry run: nothing was created or uploaded")
        return lines


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    with contextlib.suppress(ImportError):
        from huggingface_hub import errors as hub_errors

        errors += [getattr(hub_errors, name) for name in (
            "HfHubHTTPError", "LocalTokenNotFoundError", "OfflineModeIsEnabled",
            "RepositoryNotFoundError", "RevisionNotFoundError", "BadRequestError",
        ) if hasattr(hub_errors, name)]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"),
                         ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(__import__(module), name))
    return tuple(errors)


def _scrub(text: str) -> str:
    """Remove any token that might appear in an error message."""
    tokens = {os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    with contextlib.suppress(Exception):
        from huggingface_hub import get_token

        tokens.add(get_token())
    for token in tokens:
        if token:
            text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False,
                revision: str | None = None, create_pr: bool = False, dry_run: bool = False,
                require_metrics: bool = False, commit_message: str | None = None,
                api: Any = None) -> PushResult:
    """Validate ``folder`` and upload it to the Hub model repo ``repo_id``.

    ``HfApi().create_repo(exist_ok=True)`` (private when asked), a branch for ``revision``
    when it is not ``main`` and no pull request is asked, then ``upload_folder``. The
    token is huggingface_hub's own (``HF_TOKEN`` or ``hf auth login``); it is never read,
    printed or written here.

    Args:
        api: an ``HfApi`` (tests pass a stand-in); default ``HfApi()``.

    Raises:
        HubExportError: the folder or repo id is invalid (nothing was contacted).
        PushError: the Hub could not be reached or refused; the folder is untouched.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    problems = validate_export(folder, require_metrics=require_metrics)
    if problems:
        raise HubExportError(f"refusing to push {folder}:\n  - " + "\n  - ".join(problems))
    files = _upload_files(folder)
    result = PushResult(repo_id=repo_id,
                        files=[(p.relative_to(folder).as_posix(), p.stat().st_size)
                               for p in files],
                        private=private, revision=revision, create_pr=create_pr,
                        dry_run=dry_run)
    if dry_run:
        return result
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    step = "create the repo"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision and revision != "main" and not create_pr:
            step = f"create the branch {revision!r}"
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        step = "upload the folder"
        info = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
            create_pr=create_pr, allow_patterns=[name for name, _ in result.files],
            commit_message=commit_message or f"Upload {folder.name} with timm-ccrop",
        )
    except _network_errors() as err:
        raise PushError(
            f"could not {step} on the Hugging Face Hub for {repo_id}: {type(err).__name__}: "
            f"{_scrub(str(err)).rstrip('. ') or 'no details'}. Check the network and your "
            "token (HF_TOKEN or `hf auth login`) and that it may write to the repo. The local "
            "folder "
            f"{folder} was not changed."
        ) from err
    result.commit_url = _maybe_str(getattr(info, "commit_url", None))
    result.pr_url = _maybe_str(getattr(info, "pr_url", None))
    return result


def _maybe_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
