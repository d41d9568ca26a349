"""Export backbones in timm's Hub layout: the trainer's ``RUN/backbone`` and run folders.

An exported folder is what ``timm.create_model('hf-hub:ORG/NAME', pretrained=True)`` and
``timm.create_model('local-dir:DIR', pretrained=True)`` read:

* ``config.json``: the architecture (possibly one of our CIFAR-stem variants, registered
  by ``import timm_ccrop``), ``num_features``, ``model_args`` and a ``pretrained_cfg``
  written field by field from the :class:`~timm_ccrop.hub.release.Release`: nothing is
  inherited from timm's registry default of the architecture (a from-scratch
  ``resnet18`` would otherwise claim timm's ``a1_in1k`` tag, its paper, its crop_pct and
  test size).
* ``model.safetensors``: the backbone only (no projector, predictor, momentum encoder,
  queue), no pickle; its metadata records the sha256 of the tensors (``weights_sha256``),
  which ``eval``, ``export`` and ``push`` check (timm's loader ignores it).
* ``README.md``: the model card (:mod:`timm_ccrop.hub.card`).

Folders are built in a staging sibling and renamed into place (:mod:`timm_ccrop.runs`),
so a failure never leaves a half-written folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from timm.models import save_for_hf
from torch import nn

from ..config import TrainConfig
from ..models.backbones import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    sign_weights_file,
)
from ..runs import RunFolder, RunWeights, build_run_backbone, read_run_weights
from ..utils.folders import EXPORT_FOLDER_FILES, replace_folder, staging_folder
from .card import CARD_NAME, CardInfo, render_card
from .measurements import (
    export_hashes,
    matching_eval_results,
    measurements_from_eval,
    monitor_record,
)
from .release import METHOD_NAMES, HubExportError, Release, check_tag

__all__ = ["check_export_target", "export_backbone", "export_run", "release_for_config",
           "write_weights_and_config"]

#: Fields of config.json's pretrained_cfg that timm computes from the live model.
_COMPUTED_FIELDS = ("fixed_input_size", "first_conv", "custom_load", "num_classes")
_RECIPE_NOTE = ("The run's full resolved config (its `config.yaml`). To reproduce, save it as "
                "`recipe.yaml` and run `timm-ccrop pretrain --recipe recipe.yaml --output "
                "runs/NAME` (the dataset path under `data` must point at your copy).")


@contextlib.contextmanager
def _swapped_pretrained_cfg(model: nn.Module, cfg: dict[str, Any]) -> Iterator[None]:
    """``save_for_hf`` reads the model's own cfg: lend it ours, then put the old one back."""
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
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def write_weights_and_config(backbone: nn.Module, folder: Path, cfg: dict[str, Any],
                             model_args: dict[str, Any] | None) -> dict[str, Any]:
    """timm's ``save_for_hf`` (safetensors only), then config.json's pretrained_cfg set to
    exactly ``cfg`` (its non-null fields) plus the fields timm computes from the model,
    and the sha256 of the weights recorded in model.safetensors' metadata."""
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
    sign_weights_file(folder / WEIGHTS_NAME)
    for stray in folder.iterdir():  # save_for_hf writes only these two; be sure
        if stray.name not in (CONFIG_NAME, WEIGHTS_NAME):
            stray.unlink()
    return config


def release_for_config(config: TrainConfig, license: str = "apache-2.0",
                       **changes: Any) -> Release:
    """The release of weights trained with ``config`` (tag ``{crop}_{method}``);
    ``changes`` replace fields (``kind``, ``hf_hub_id``, ``crop_params``, ...)."""
    mean, std = config.normalisation()
    size = config.resolved_image_size()
    method = METHOD_NAMES.get(config.method, config.method)
    release = Release(
        architecture=config.model, tag=f"{config.crop}_{config.method}", method=config.method,
        crop=config.crop, dataset=config.data, input_size=(3, size, size),
        mean=tuple(mean), std=tuple(std), license=license,
        description=f"{method} + {config.crop} pretraining of {config.model} on "
                    f"{config.data} with timm-ccrop (ContrastiveCrop)",
    )
    return dataclasses.replace(release, **changes)


def export_backbone(backbone: nn.Module, folder: str | Path, config: TrainConfig, *,
                    card: str | None = None, overwrite: bool = True,
                    license: str = "apache-2.0") -> Path:
    """Write ``backbone`` (trained with ``config``) to ``folder``: config.json +
    model.safetensors (+ README.md when ``card`` is given), atomically.

    This is what the trainer writes to ``RUN/backbone`` at the end of a run.
    """
    folder = Path(folder)
    cfg = release_for_config(config, license).pretrained_cfg(backbone)
    with staging_folder(folder, overwrite, EXPORT_FOLDER_FILES) as staging:
        write_weights_and_config(backbone, staging, cfg, dict(config.model_kwargs) or None)
        if card is not None:
            (staging / CARD_NAME).write_text(card)
        replace_folder(staging, folder, overwrite, EXPORT_FOLDER_FILES)
    return folder


def _crop_params(config: TrainConfig, backbone: nn.Module) -> dict[str, Any]:
    """The crop mode's parameters as the card lists them: with model boxes, the run's
    localizer and its settings resolved on ``backbone`` (family defaults named)."""
    if config.crop == "rcrop":
        return {}
    params: dict[str, Any] = {"alpha": config.resolved_alpha()}
    if config.crop == "ccrop":
        warmup, interval = config.resolved_schedule()
        params.update({"box_source": config.box_source, "box_warmup_epochs": warmup,
                       "loc_interval": interval})
        if config.box_source == "model":  # e.g. peak(background=median), stage -1, ...
            if momentum := config.resolved_box_momentum():
                params["box_momentum"] = momentum
            params.update(config.build_localizer().resolve(backbone).card_params())
    return params


def _read_run(run: Path, checkpoint: Path | None, verify: bool
              ) -> tuple[RunWeights, nn.Module]:
    """The run's weights and its backbone (the run folder's one reader), a failure to read
    them as the export's error."""
    try:
        loaded = read_run_weights(run, checkpoint, verify)
        return loaded, build_run_backbone(loaded)
    except ValueError as err:
        raise HubExportError(str(err)) from err


def _run_card(run: RunWeights, release: Release, backbone: nn.Module) -> CardInfo:
    config = run.config
    epochs = str(config.epochs) if run.epoch is None else (
        f"{run.epoch} of {config.epochs}"
        + (" (stopped early, mid-run checkpoint)" if run.partial else ""))
    training = {
        "Epochs": epochs, "Batch size": config.batch_size,
        "Optimizer": f"{config.optimizer}, lr {config.lr}, weight decay {config.weight_decay}",
    }
    return CardInfo.for_backbone(
        release, backbone, recipe_yaml=run.config_text, recipe_note=_RECIPE_NOTE,
        training=training, monitor_bank=config.knn_max_train,
        monitor=monitor_record(run.folder, run.epoch) if config.knn_every else None,
        provenance=f"Trained with timm-ccrop: {release.method_name} + {config.crop} "
                   f"pretraining of {config.model} on `{config.data}`.",
    )


def check_export_target(run: str | Path, out: str | Path) -> None:
    """Refuse an export folder ``out`` that is, contains or lies inside the run folder.

    Replacing ``out`` (``--overwrite``) would delete the run itself, or the run and every
    file next to it; writing inside it mixes the export with the run's own files. Paths
    are compared resolved (symlinks, ``..``). ``run`` may be a checkpoint file: its folder
    counts. Raises :class:`HubExportError` naming both paths and a folder to use instead.
    """
    source = Path(run).expanduser()
    folder = (source.parent if source.is_file() else source).resolve()
    target = Path(out).expanduser().resolve()
    if target == folder:
        relation = "is"
    elif folder.is_relative_to(target):
        relation = "contains"
    elif target.is_relative_to(folder):
        relation = "lies inside"
    else:
        return
    raise HubExportError(
        f"--out {target} {relation} the run folder {folder} being exported (writing it "
        f"would mix with or replace the run); export outside the run, e.g. --out "
        f"{folder.parent / (folder.name + '-export')}")


def export_run(run: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
               overwrite: bool = False, repo_id: str | None = None,
               dataset: str | None = None, license: str = "apache-2.0",
               tag: str | None = None, eval_reports: Sequence[str | Path] = (),
               verify: bool = True) -> Path:
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
        verify: check the checkpoint's (or ``backbone/model.safetensors``') weights
            against the sha256 recorded when they were written; False for a file edited on
            purpose.
    """
    out = Path(out)
    check_export_target(run, out)  # before anything is read or written
    loaded, backbone = _read_run(Path(run), Path(checkpoint) if checkpoint is not None
                                 else None, verify)
    release = release_for_config(loaded.config, license, kind=dataset or None,
                                 hf_hub_id=repo_id, crop_params=_crop_params(loaded.config,
                                                                             backbone))
    if tag:
        release = dataclasses.replace(release, tag=check_tag(tag))
    run_folder = RunFolder(loaded.folder)
    candidates = [run_folder.path / "eval.json", run_folder.backbone_dir / "eval.json",
                  out / "eval.json", *(Path(p) for p in eval_reports)]
    with staging_folder(out, overwrite, EXPORT_FOLDER_FILES) as staging:
        write_weights_and_config(backbone, staging, release.pretrained_cfg(backbone),
                                 dict(loaded.config.model_kwargs) or None)
        reports = matching_eval_results(candidates, export_hashes(staging, backbone))
        release = dataclasses.replace(release, measurements=tuple(
            row for report in reports for row in measurements_from_eval(report)))
        (staging / CARD_NAME).write_text(render_card(_run_card(loaded, release, backbone)))
        replace_folder(staging, out, overwrite, EXPORT_FOLDER_FILES)
    return out
