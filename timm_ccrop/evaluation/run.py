"""The whole evaluation behind ``timm-ccrop eval``: kNN and/or a linear probe of a frozen
backbone on a labelled dataset, reported in ``eval.json``.

:func:`run_evaluation` is a list of named steps. Everything that can be checked without
heavy work is checked first (:func:`resolve_inputs`), so bad input fails before any
weights are loaded or any image is read. The reported linear-probe accuracy is the one of
the FINAL epoch; the test split is never used to choose anything (:func:`split_validation`
carves a seeded validation split from the train split for that).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from timm.data import create_transform, resolve_model_data_config
from torch import nn

from ..data import DatasetSpec, default_eval_split, parse_data_spec
from ..utils.distributed import ignored_precision
from .features import extract_features, fits_on
from .knn import knn_accuracy
from .probe import EvalSets, LinearProbeResult, linear_probe_features, linear_probe_images
from .recipes import ProbeRecipe, load_probe_recipe, probe_train_transform
from .results import (
    EVAL_FORMAT,
    ReportWriteError,
    check_report_target,
    finish_results,
    result_lines,
    results_path,
    write_results,
    written_line,
)
from .settings import EvalConfig
from .sources import BackboneSource, load_backbone, resolve_backbone_source
from .splits import dataset_targets, labelled_split, split_validation, warn_if_single_class

__all__ = ["EvalInputs", "Preprocessing", "resolve_inputs", "run_evaluation"]


@dataclass
class EvalInputs:
    """What the cheap checks resolved, before any weights are loaded or image is read.

    ``recipe`` is None for ``probe_recipe='auto'`` (it needs the input size) or when no
    linear probe runs; ``train_indices``/``val_indices`` index ``train_dataset``.
    """

    source: BackboneSource
    spec: DatasetSpec
    train_split: str
    test_split: str
    train_dataset: Any
    test_dataset: Any
    train_indices: list[int]
    val_indices: list[int]
    recipe: ProbeRecipe | None
    output: Path
    created: Path | None = None  # the folder the output check created (removed on failure)


def resolve_inputs(config: EvalConfig) -> EvalInputs:
    """Check the settings, the backbone source, the data spec, that both splits exist and
    are labelled, the probe recipe; decide the output file and check that it can be
    written (its folder is created). Nothing heavy is done."""
    config.validate()
    source = resolve_backbone_source(config.backbone)
    data_text = config.data
    if data_text is None and source.run_config:
        data_text = source.run_config.get("eval_data") or source.run_config.get("data")
    if not data_text:
        raise ValueError("give --data (a dataset spec such as cifar10:PATH); only a run "
                         "folder with a config.yaml names its own dataset")
    spec = parse_data_spec(data_text)
    train_split = config.train_split or "train"
    test_split = config.test_split or default_eval_split(spec)
    train_dataset = labelled_split(spec, train_split, "train")
    test_dataset = labelled_split(spec, test_split, "test")
    warn_if_single_class(train_dataset, f"the train split {train_split!r} of {spec}")
    train_idx, val_idx = split_validation(len(train_dataset), config.val_fraction, config.seed)
    recipe = None
    if "linear" in config.protocols and config.probe_recipe != "auto":
        recipe = load_probe_recipe(config.probe_recipe)  # an explicit name/path: check now
    output = results_path(config, source)
    created = check_report_target(output)  # last: other bad input leaves no folder behind
    return EvalInputs(source, spec, train_split, test_split, train_dataset, test_dataset,
                      train_idx, val_idx, recipe, output, created)


@dataclass
class Preprocessing:
    """The eval transform's settings (config first, then the model's pretrained_cfg)."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str
    crop_mode: str

    def transform(self) -> Any:
        """The eval transform (resize, centre crop, normalise)."""
        return create_transform(self.size, is_training=False, crop_pct=self.crop_pct,
                                crop_mode=self.crop_mode, interpolation=self.interpolation,
                                mean=self.mean, std=self.std)

    def to_dict(self) -> dict[str, Any]:
        """eval.json's ``input`` section."""
        return {"image_size": self.size, "mean": list(self.mean), "std": list(self.std),
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}


@dataclass
class _Evaluation:
    """An evaluation under way: what every step after loading the backbone reads."""

    config: EvalConfig
    inputs: EvalInputs
    accelerator: Any
    model: nn.Module
    backbone_info: dict[str, Any]
    recipe: ProbeRecipe
    preprocessing: Preprocessing
    num_classes: int
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})

    def timed(self, name: str, function: Callable[[], Any]) -> Any:
        """``function()``, its wall time recorded as ``timings[name]`` (seconds)."""
        begin = time.perf_counter()
        value = function()
        self.timings[name] = round(time.perf_counter() - begin, 3)
        return value


@dataclass
class _Features:
    """Features of the splits: the probe/kNN train set (when needed) and the eval sets."""

    train: tuple[torch.Tensor, torch.Tensor] | None
    eval_sets: EvalSets
    full_train_pass: bool


def _final_recipe(config: EvalConfig, chosen: ProbeRecipe | None, size: int) -> ProbeRecipe:
    """The recipe ('auto': by input size) with the config's epochs/lr/batch size."""
    recipe = chosen or load_probe_recipe("imagenet" if size >= 128 else "small")
    return recipe.replace(epochs=config.epochs, lr=config.lr, batch_size=config.batch_size)


def _preprocessing(config: EvalConfig, data_config: dict[str, Any], recipe: ProbeRecipe
                   ) -> Preprocessing:
    """The config's size/mean/std, else the model's; the recipe's test crop fraction."""
    crop_pct = (recipe.test_crop_pct if recipe.test_crop_pct is not None
                else data_config.get("crop_pct", 1.0))
    return Preprocessing(int(config.image_size or data_config["input_size"][-1]),
                         tuple(config.mean or data_config["mean"]),
                         tuple(config.std or data_config["std"]), crop_pct,
                         data_config.get("interpolation", "bilinear"),
                         data_config.get("crop_mode", "center"))


def _check_batch_split(config: EvalConfig, recipe: ProbeRecipe, processes: int) -> None:
    if ("linear" in config.protocols and config.linear_mode == "paper"
            and recipe.batch_size % processes):
        raise ValueError(f"batch size {recipe.batch_size} is not divisible by "
                         f"{processes} processes; choose a multiple")


def _prepare(config: EvalConfig, inputs: EvalInputs, accelerator: Any) -> _Evaluation:
    """Load the backbone and settle the recipe, the preprocessing and the classes."""
    model, backbone_info = load_backbone(inputs.source, seed=config.seed,
                                        verify=config.verify_weights)
    data_config = resolve_model_data_config(model)
    size = int(config.image_size or data_config["input_size"][-1])
    recipe = _final_recipe(config, inputs.recipe, size)
    _check_batch_split(config, recipe, accelerator.num_processes)
    model.to(accelerator.device)
    num_classes = max(int(getattr(inputs.train_dataset, "num_classes", 0) or 0),
                      max(dataset_targets(inputs.train_dataset)) + 1,
                      max(dataset_targets(inputs.test_dataset)) + 1)
    return _Evaluation(config, inputs, accelerator, model, backbone_info, recipe,
                       _preprocessing(config, data_config, recipe), num_classes)


def _extract(run: _Evaluation, dataset: Any, desc: str, counters: dict[str, int]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``dataset`` with the eval transform, ``batch_size / N`` per process."""
    per_process = max(1, run.recipe.batch_size // run.accelerator.num_processes)
    return extract_features(run.model, dataset, run.preprocessing.transform(),
                            batch_size=per_process, num_workers=run.config.num_workers,
                            accelerator=run.accelerator, progress=run.config.progress,
                            desc=desc, counters=counters)


def _features(run: _Evaluation) -> _Features:
    """Test features always; train features for kNN and the fast probe (else only the
    validation part, which the paper probe is scored on)."""
    inputs, test_counters, train_counters = run.inputs, {}, {}
    test = run.timed("features_test_s", lambda: _extract(
        run, inputs.test_dataset, "features test", test_counters))
    run.skipped["test"] = test_counters.get("skipped", 0)
    full_train_pass = "knn" in run.config.protocols or run.config.linear_mode == "fast"
    train = val = None
    if full_train_pass:
        every_feature, every_label = run.timed("features_train_s", lambda: _extract(
            run, inputs.train_dataset, "features train", train_counters))
        train = every_feature[inputs.train_indices], every_label[inputs.train_indices]
        if inputs.val_indices:
            val = every_feature[inputs.val_indices], every_label[inputs.val_indices]
    elif inputs.val_indices:
        val_subset = torch.utils.data.Subset(inputs.train_dataset, inputs.val_indices)
        val = run.timed("features_val_s", lambda: _extract(
            run, val_subset, "features val", train_counters))
    run.skipped["train"] = train_counters.get("skipped", 0)
    eval_sets = {"test": test} if val is None else {"test": test, "val": val}
    return _Features(train, eval_sets, full_train_pass)


def _report_header(run: _Evaluation) -> dict[str, Any]:
    """eval.json's description of what is evaluated, on what, and how."""
    config, inputs, accelerator = run.config, run.inputs, run.accelerator
    return {
        "format": EVAL_FORMAT,
        "protocols": list(config.protocols),
        "backbone": run.backbone_info,
        "data": {
            "spec": str(inputs.spec), "train_split": inputs.train_split,
            "test_split": inputs.test_split, "num_classes": run.num_classes,
            "num_train": len(inputs.train_indices), "num_val": len(inputs.val_indices),
            "num_test": len(inputs.test_dataset), "val_fraction": config.val_fraction,
            "val_seed": config.seed if inputs.val_indices else None,
        },
        "input": run.preprocessing.to_dict(),
        "settings": dataclasses.asdict(config),
        "seed": config.seed,
        "processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "mixed_precision": str(accelerator.mixed_precision),
    }


def _knn(run: _Evaluation, features: _Features) -> dict[str, Any]:
    """kNN accuracy on every eval set (main process only)."""
    assert features.train is not None
    train_features, train_labels = features.train
    config, device = run.config, run.accelerator.device
    # the search runs where the bank is; normalising it needs a second copy
    fits = fits_on(device, 2 * train_features.numel() * 4)
    bank = train_features.to(device) if fits else train_features
    result: dict[str, Any] = {"k": config.knn_k, "temperature": config.knn_temperature,
                              "k_used": min(config.knn_k, len(bank))}
    for name, (eval_features, labels) in features.eval_sets.items():
        result[name] = knn_accuracy(bank, train_labels, eval_features, labels,
                                    run.num_classes, k=config.knn_k,
                                    knn_temperature=config.knn_temperature)
    return result


def _probe(run: _Evaluation, features: _Features) -> LinearProbeResult | None:
    """The linear probe of the configured mode; None on the fast mode's other processes."""
    config, inputs, recipe = run.config, run.inputs, run.recipe
    if config.linear_mode == "fast":
        if not run.accelerator.is_main_process:
            return None
        assert features.train is not None
        return run.timed("linear_s", lambda: linear_probe_features(
            *features.train, run.num_classes, recipe, features.eval_sets, seed=config.seed,
            device=run.accelerator.device, progress=config.progress))
    train_subset = (torch.utils.data.Subset(inputs.train_dataset, inputs.train_indices)
                    if inputs.val_indices else inputs.train_dataset)
    prep = run.preprocessing
    train_transform = (probe_train_transform(prep.size, prep.mean, prep.std, recipe,
                                             prep.interpolation)
                       if config.augment else prep.transform())
    probe = run.timed("linear_s", lambda: linear_probe_images(
        run.model, train_subset, run.num_classes, train_transform, recipe,
        features.eval_sets, seed=config.seed, accelerator=run.accelerator,
        num_workers=config.num_workers, progress=config.progress))
    # The full train pass already counted every unreadable train image; else the val
    # pass counted the val part and the probe's first epoch the rest.
    run.skipped["train"] = (max(run.skipped["train"], probe.skipped)
                            if features.full_train_pass
                            else run.skipped["train"] + probe.skipped)
    return probe


def _probe_section(probe: LinearProbeResult) -> dict[str, Any]:
    """eval.json's ``linear`` section."""
    return {
        "mode": probe.mode,
        "augment": probe.augment,
        "recipe": probe.recipe.to_dict(),
        "reported_epoch": probe.recipe.epochs,
        "selection": "final epoch; the test split never chooses anything",
        **dict(probe.accuracy.items()),
        "history": probe.history,
        "seconds": round(probe.seconds, 3),
    }


def _default_accelerator(config: EvalConfig) -> Accelerator:
    # the probe's own sampler orders the batches; Accelerate must not reseed it
    accelerator = Accelerator(mixed_precision=config.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(
                                  use_seedable_sampler=False))
    if problem := ignored_precision(accelerator):
        warnings.warn(problem, UserWarning, stacklevel=3)
    return accelerator


def _publish(report: dict[str, Any], output: Path,
             echo: Callable[[str], None] | None) -> ReportWriteError | None:
    """Print the numbers, then write eval.json: a failed write loses nothing printed.

    Returns the write error (raised by the caller once every process is done)."""
    if echo is not None:
        for line in result_lines(report):
            echo(line)
    try:
        write_results(output, report)
    except ReportWriteError as err:
        return err
    if echo is not None:
        echo(written_line(report))
    return None


def run_evaluation(config: EvalConfig, accelerator: Any = None,
                   echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate a frozen backbone with kNN and/or a linear probe; write ``eval.json``.

    Everything that can be checked without heavy work is checked first (settings,
    backbone source, data spec, that the splits exist and are labelled, the probe
    recipe, that the output folder is writable). Returns the report that is written (by
    the main process) to ``eval.json``; its ``output`` key says where.

    Args:
        config: the settings.
        accelerator: an ``accelerate.Accelerator`` (default: one for ``config``).
        echo: called by the main process with each summary line (e.g. ``print``): the
            numbers BEFORE eval.json is written, then where it was written.

    Raises:
        ReportWriteError: eval.json could not be written (an OSError; the numbers were
            echoed and are in its ``report``).
    """
    started = time.perf_counter()
    inputs = resolve_inputs(config)
    accelerator = accelerator if accelerator is not None else _default_accelerator(config)
    set_seed(config.seed)
    try:
        run = _prepare(config, inputs, accelerator)
    except (ValueError, OSError):  # bad input found while loading: leave no empty folder
        if inputs.created is not None and accelerator.is_main_process:
            shutil.rmtree(inputs.created, ignore_errors=True)
        raise
    features = _features(run)
    report = _report_header(run)
    if "knn" in config.protocols and accelerator.is_main_process:
        report["knn"] = run.timed("knn_s", lambda: _knn(run, features))
        report["knn"]["seconds"] = run.timings["knn_s"]
    if "linear" in config.protocols:
        probe = _probe(run, features)
        if probe is not None:
            report["linear"] = _probe_section(probe)
    run.timings["total_s"] = round(time.perf_counter() - started, 3)
    finish_results(report, inputs.output, run.skipped, run.timings)
    failure = _publish(report, inputs.output, echo) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()  # before raising: the other processes must not hang
    if failure is not None:
        raise failure
    return report
