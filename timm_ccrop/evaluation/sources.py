"""Where a backbone to evaluate comes from, and loading it.

A source is a run folder (its exported ``backbone/`` or its newest checkpoint), an
exported backbone folder (timm's Hub layout), a checkpoint file, or a timm name. It is
resolved without loading anything, so bad input fails before any work; building and
reading weights is :mod:`timm_ccrop.models.backbones`' job.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
from timm.models import is_model, parse_model_name, split_model_name_tag
from torch import nn

from ..config import TrainConfig
from ..models.backbones import (
    EXPORT_WEIGHT_FILES,
    create_backbone,
    export_weights_file,
    sha256_file,
    state_dict_sha256,
    verify_weights_file,
)
from ..runs import build_run_backbone, list_checkpoints, read_run_config, read_run_weights

__all__ = ["BackboneSource", "load_backbone", "resolve_backbone_source"]


@dataclass
class BackboneSource:
    """Where a backbone comes from, resolved without loading any weights.

    ``kind``: ``'export'`` (a folder with config.json + model.safetensors, also a run's
    ``backbone/``), ``'checkpoint'`` (a run's newest ``checkpoint-epoch*.pt``, or the
    file given) or ``'timm'`` (a name for ``timm.create_model``). ``folder`` is where
    ``eval.json`` goes by default (the run folder or the export folder), ``run_config``
    the run's ``config.yaml`` when there is one.
    """

    text: str
    kind: str
    name: str
    folder: Path | None = None
    weights: Path | None = None
    run_config: dict[str, Any] | None = None
    pretrained: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The source as eval.json's ``backbone`` section records it."""
        return {"source": self.text, "kind": self.kind, "name": self.name,
                "folder": str(self.folder) if self.folder else None,
                "weights": str(self.weights) if self.weights else None,
                "pretrained": self.pretrained}


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or "/" in text or text.startswith((".", "~"))
            or text.endswith((".pt", ".pth", ".safetensors", ".bin")))


def resolve_backbone_source(text: str) -> BackboneSource:
    """Classify ``text`` (run folder, export folder, checkpoint file or timm name).

    Raises FileNotFoundError for a path that does not exist or holds no backbone, and
    ValueError for a name timm does not know; nothing is loaded.
    """
    text = str(text).strip()
    if not text:
        raise ValueError("--backbone is empty; give a run folder, an exported backbone "
                         "folder or a timm model name")
    if text.lower().startswith("local-dir:"):
        folder = Path(text.split(":", 1)[1]).expanduser()
        weights = export_weights_file(folder) if folder.is_dir() else None
        if weights is None:
            raise FileNotFoundError(f"backbone folder {folder} does not exist or has no "
                                    f"config.json + {' / '.join(EXPORT_WEIGHT_FILES)}")
        return BackboneSource(text, "export", f"local-dir:{folder}", folder, weights)
    if text.lower().startswith(("hf-hub:", "hf_hub:")):
        return BackboneSource(text, "timm", text, pretrained=True)
    path = Path(text).expanduser()
    if path.is_file():
        return _file_source(text, path)
    if path.is_dir():
        return _folder_source(text, path)
    if _looks_like_path(text):
        raise FileNotFoundError(
            f"backbone {text!r} does not exist (no such file or folder); for a Hub model "
            f"write hf-hub:{text}")
    return _timm_source(text)


def _file_source(text: str, path: Path) -> BackboneSource:
    """A checkpoint file, or the weights file of an exported backbone folder."""
    if path.suffix in (".safetensors", ".bin") and export_weights_file(path.parent):
        return BackboneSource(text, "export", f"local-dir:{path.parent}", path.parent,
                              export_weights_file(path.parent))
    if path.suffix in (".pt", ".pth"):
        run_config = read_run_config(path.parent)
        return BackboneSource(text, "checkpoint", str((run_config or {}).get("model", "")),
                              path.parent, path, run_config)
    raise FileNotFoundError(
        f"backbone file {path} is neither a training checkpoint (.pt) nor the weights "
        "of an exported backbone folder (config.json + model.safetensors)")


def _folder_source(text: str, path: Path) -> BackboneSource:
    """An export folder, or a run folder: its ``backbone/`` export, else its checkpoint."""
    weights = export_weights_file(path)
    if weights is not None:
        return BackboneSource(text, "export", f"local-dir:{path}", path, weights,
                              read_run_config(path.parent))
    exported = export_weights_file(path / "backbone")
    if exported is not None:
        return BackboneSource(text, "export", f"local-dir:{path / 'backbone'}", path,
                              exported, read_run_config(path))
    checkpoints = list_checkpoints(path)
    if checkpoints:
        run_config = read_run_config(path)
        return BackboneSource(text, "checkpoint", str((run_config or {}).get("model", "")),
                              path, checkpoints[0], run_config)
    raise FileNotFoundError(
        f"{path} holds no backbone: expected a run folder (backbone/ with config.json + "
        "model.safetensors, or checkpoint-epoch*.pt) or an exported backbone folder "
        "(config.json + model.safetensors)")


def _timm_source(text: str) -> BackboneSource:
    """A timm name: with a pretrained tag its weights, without one a random init."""
    _, arch = parse_model_name(text)
    base, tag = split_model_name_tag(arch)
    if not is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"backbone {text!r} is no folder and no timm model name{hint}")
    if tag and arch not in timm.list_pretrained(arch):
        raise ValueError(f"timm has no pretrained weights {arch!r}; known tags: "
                         f"{', '.join(timm.list_pretrained(base + '.*')[:10]) or 'none'}")
    return BackboneSource(text, "timm", arch, pretrained=bool(tag))


def load_backbone(source: BackboneSource | str, seed: int = 0, verify: bool = True
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """Build the backbone (``num_classes=0``, eval mode) and describe its weights.

    With ``verify``, an export's ``model.safetensors`` and a checkpoint are checked against
    the sha256 recorded when they were written (a ValueError naming the file on a
    mismatch); False for weights edited on purpose.

    Returns ``(model, info)``: ``info`` has the source, architecture, feature size and a
    sha256 of the weights file (``sha256_of: 'file'``) or of the state dict's bytes
    (``'state_dict'``: checkpoints, Hub/registry weights, random init seeded by ``seed``).
    """
    if not isinstance(source, BackboneSource):
        source = resolve_backbone_source(source)
    info: dict[str, Any] = source.to_dict()
    if source.kind == "checkpoint":
        model, checkpoint = _backbone_from_checkpoint(source, seed, verify)
        info.update(checkpoint)
        info["sha256"], info["sha256_of"] = state_dict_sha256(model.state_dict()), "state_dict"
    else:
        if verify and source.weights is not None and source.weights.suffix == ".safetensors":
            verify_weights_file(source.weights)  # before timm reads it without checking
        model = _build_named(source, seed, verify)
        if source.weights is not None:
            info["sha256"], info["sha256_of"] = sha256_file(source.weights), "file"
        else:
            info["sha256"] = state_dict_sha256(model.state_dict())
            info["sha256_of"] = "state_dict"
        info["random_init"] = source.kind == "timm" and not source.pretrained
    cfg = getattr(model, "pretrained_cfg", None) or {}
    info["architecture"] = cfg.get("architecture") or type(model).__name__
    info["num_features"] = int(getattr(model, "num_features", 0)) or None
    info["num_parameters"] = sum(p.numel() for p in model.parameters())
    return model.eval(), info


def _build_named(source: BackboneSource, seed: int, verify: bool) -> nn.Module:
    """An export folder or a timm name, with the error message of ``timm-ccrop eval``."""
    try:
        return create_backbone(source.name, pretrained=source.pretrained, seed=seed,
                               verify=verify)
    except Exception as err:
        # create_backbone wraps weight-loading failures; name the original error
        cause = err.__cause__ if isinstance(err.__cause__, Exception) else err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        hint = (" Without network access put the weights into the Hugging Face cache and "
                "set HF_HUB_OFFLINE=1." if source.kind == "timm" and source.pretrained
                else "")
        raise ValueError(f"cannot build backbone {source.text!r} ({type(cause).__name__}: "
                         f"{first}).{hint}") from err


def _backbone_from_checkpoint(source: BackboneSource, seed: int, verify: bool
                              ) -> tuple[nn.Module, dict[str, Any]]:
    """The ``backbone.*`` weights of a training checkpoint in the run's model (a folder:
    its newest readable checkpoint, corrupt ones skipped; a file: that one)."""
    given = Path(source.text).expanduser()
    try:
        weights = read_run_weights(given if given.is_file() else Path(source.folder or given),
                                   verify=verify)
    except ValueError as err:
        if "neither config.yaml nor a checkpoint" not in str(err):
            raise
        raise ValueError(f"{err}; export the backbone instead") from err
    model = build_run_backbone(weights, seed=seed)
    preset = _run_preset(weights.config)
    model.pretrained_cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **preset}
    source.run_config = weights.config.to_dict()
    return model, {"checkpoint": str(weights.source), "epoch": weights.epoch}


def _run_preset(config: TrainConfig) -> dict[str, Any]:
    """input size, mean and std of a run's views preset (as its export would record)."""
    mean, std = config.normalisation()
    size = config.resolved_image_size()
    return {"input_size": (3, size, size), "mean": tuple(mean), "std": tuple(std),
            "crop_pct": 1.0, "crop_mode": "center", "interpolation": "bilinear"}
