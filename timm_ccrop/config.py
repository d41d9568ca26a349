"""Pretraining configuration: one dataclass, YAML recipes and config files.

A run is fully described by a :class:`TrainConfig`. Every field declares its type, help
text, group, choices and bounds once, in ``dataclasses.field(metadata=...)`` (an
:class:`Option`); :meth:`TrainConfig.validate` checks a config against them, and the
command line (``timm-ccrop pretrain``) is generated from them. Recipes in
``zoo/recipes/*.yaml`` hold the paper's settings; ``--recipe NAME`` loads one, ``-c FILE``
a config file, and any ``--key value`` on the command line overrides both. The resolved
config is saved with every run and checkpoint.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .crop.transforms import CROP_MODES, default_alpha
from .crop.views import VIEW_PRESETS, view_preset
from .localize import (
    DEFAULT_LOCALIZER,
    DEFAULT_LOCALIZER_OPTIONS,
    Localizer,
    create_localizer,
)
from .utils.constants import KNN_K, KNN_TEMPERATURE, MIN_IMAGE_SIZE
from .utils.fields import Bounds, Option, field_problems, option, options_of

__all__ = [
    "BOX_SOURCES",
    "CROP_MODES",
    "GROUPS",
    "MAIN_JOB_DATA",
    "MIN_IMAGE_SIZE",
    "MIXED_PRECISION",
    "OPTIMIZERS",
    "RECIPE_DIR",
    "Bounds",
    "Option",
    "TrainConfig",
    "config_options",
    "list_recipes",
    "load_config_file",
    "load_recipe",
    "upgrade_config_values",
]

RECIPE_DIR = Path(str(resources.files("timm_ccrop.zoo") / "recipes"))

BOX_SOURCES = ("model", "ground-truth")
MIXED_PRECISION = ("no", "bf16", "fp16")
#: 'sgd' is classical momentum (the official recipes); the others are timm's (LARS and LAMB
#: for the large-batch SimCLR/BYOL recipes), built by timm.optim.create_optimizer_v2.
OPTIMIZERS = ("sgd", "adamw", "lars", "lamb")
AUGMENT_ON = ("auto", "loader", "device")
#: The option groups of :class:`TrainConfig`, in the order of the command line's help.
GROUPS = ("data", "model and method", "ContrastiveCrop", "optimisation", "execution")
def _positive(default: Any, help: str, group: str, **extra: Any) -> Any:
    return option(default, help, group=group, low=0, low_open=True, **extra)


_DATA, _MODEL, _CROP, _OPTIM, _EXEC = GROUPS
#: The data of the no-argument main job (``timm-ccrop pretrain``).
MAIN_JOB_DATA = ("synthetic:num_samples=2500,image_size=32,object_scale=0.2:0.35,"
                 "center_bias=-0.5,backgrounds=1,class_colours=1")


@dataclass
class TrainConfig:
    """Everything a pretraining run needs. Defaults: a short CPU job on the built-in data."""

    # data
    # The main job's data: small off-centre objects on one shared background, a colour per
    # class, the built-in setting that SimCLR learns within minutes on a CPU and where
    # random crops often miss the object (docs/synthetic.md, "Self-supervised learnability").
    data: str = option(MAIN_JOB_DATA,
                        "dataset spec, e.g. cifar10:PATH, folder:PATH, synthetic:...",
                        group=_DATA)
    eval_data: str | None = option(None, "kNN monitor split (default: the dataset's eval "
                                    "split)", group=_DATA)
    views: str = option("cifar", "view preset of timm_ccrop.crop.views", group=_DATA,
                         choices=VIEW_PRESETS)
    # 8 px, as eval: smaller inputs leave no feature map for the crops and the heatmaps
    image_size: int | None = option(None, "input size of the views in pixels (default: the "
                                     "preset's size)", group=_DATA, low=MIN_IMAGE_SIZE)
    num_workers: int = option(2, "data loader processes per training process", group=_DATA,
                               low=0)
    augment_on: str = option("auto", "where views are made: 'loader' (PIL, per image), "
                              "'device' (batched tensors) or 'auto' (the device for data "
                              "stored at a fixed size no larger than the views, e.g. CIFAR "
                              "and the built-in data; else the loader)", group=_DATA,
                              choices=AUGMENT_ON)
    # model and method
    model: str = option("resnet_mini_cifar", "any timm model name (also hf-hub:ORG/NAME, "
                         "local-dir:PATH: their architecture only, from random weights)",
                         group=_MODEL)
    model_kwargs: dict[str, Any] = option(help="further timm.create_model arguments, as a "
                                           "YAML mapping, e.g. '{drop_path_rate: 0.1}'",
                                           group=_MODEL, factory=dict)
    method: str = option("simclr", "Siamese method: simclr, moco, byol, simsiam",
                          group=_MODEL)
    method_kwargs: dict[str, Any] = option(help="method arguments, as a YAML mapping, e.g. "
                                            "'{queue_size: 4096}'", group=_MODEL,
                                            factory=dict)
    # ContrastiveCrop
    crop: str = option("ccrop", "crop mode: random crop, ContrastiveCrop or SimCCrop",
                        group=_CROP, choices=CROP_MODES)
    alpha: float | None = _positive(None, "Beta(alpha, alpha) of the crop centre (default: "
                                    "the crop's own: ccrop 0.6, simccrop 0.1)", _CROP)
    localizer: str = option(DEFAULT_LOCALIZER, "how feature maps become boxes: paper (the "
                             "official rule), union, component, peak, ddt, ccam (see "
                             "docs/localization.md), or harvest (maps of the training "
                             "forward, no box pass; docs/harvest.md)", group=_CROP)
    localizer_kwargs: dict[str, Any] | None = option(
        None, "options of the localizer, e.g. {stage: -2, reduction: l2, level: 2, pick: "
        "peak, dilate: true} (threshold: the union rule's k); given options replace the "
        "defaults (default: the default localizer's, {background: median}; none for the "
        "others)", group=_CROP)
    # 0 since 2026-12-08: on per-image photographs a random-crop warm-up taught the maps
    # the background and the first boxes were worse than the random-init network's
    # (docs/realistic.md, "Boxes that stay good"; plan amendment 5's rule)
    box_warmup_epochs: int | None = option(0, "epochs of random crops before the first box "
                                        "pass; 0 makes the first pass on the random-init "
                                        "network, before epoch 1 (--localizer harvest "
                                        "needs >= 1); null: 20% of training, the paper's "
                                        "schedule", group=_CROP, low=0)
    box_momentum: float | None = option(None, "each box pass moves a box this share of the "
                                        "way less to the new one: 0 replaces it (the "
                                        "paper), 0.9 keeps 90% of the old box, 1 keeps the "
                                        "first pass's boxes (default: 1 when the first "
                                        "pass reads the random-init network, else 0; "
                                        "docs/realistic.md)", group=_CROP, low=0, high=1)
    loc_interval: int | None = option(None, "epochs between box passes (default: 20% of "
                                       "training; every epoch with --localizer harvest)",
                                       group=_CROP, low=1)
    box_source: str = option("model", "'model' (the heatmaps) or 'ground-truth' (the "
                              "oracle, where the data has boxes)", group=_CROP,
                              choices=BOX_SOURCES)
    # optimisation
    epochs: int = option(20, "training epochs", group=_OPTIM, low=1)
    batch_size: int = option(128, "global batch size, over all processes", group=_OPTIM,
                              low=2)
    optimizer: str = option("sgd", "optimizer", group=_OPTIM, choices=OPTIMIZERS)
    # 0.3 with a 2-epoch warm-up, not the recipes' 0.5: at batch 128 on the main job's data
    # 0.5 gave 55-65% validation kNN (split of the training images), 0.3 + warm-up 70-71%
    # (docs/first-run.md); recipes set their own lr.
    lr: float = _positive(0.3, "peak learning rate", _OPTIM)
    lr_base_batch: int | None = option(None, "scale lr by batch_size / lr_base_batch when "
                                        "set", group=_OPTIM, low=1)
    min_lr_ratio: float = option(0.0, "final lr of the cosine schedule, as a fraction of "
                                  "the peak", group=_OPTIM, low=0, high=1)
    lr_warmup_epochs: float = option(2.0, "linear lr warm-up, in epochs", group=_OPTIM,
                                      low=0)
    momentum: float = option(0.9, "SGD momentum (AdamW: beta1)", group=_OPTIM, low=0, high=1,
                              high_open=True)
    weight_decay: float = option(1e-4, "weight decay", group=_OPTIM, low=0)
    exclude_norm_bias: bool = option(True, "no weight decay on norm layers and biases",
                                      group=_OPTIM)
    grad_clip: float | None = _positive(None, "clip the gradient norm to this (default: no "
                                        "clipping)", _OPTIM)
    # execution
    mixed_precision: str = option("no", "autocast dtype", group=_EXEC,
                                   choices=MIXED_PRECISION)
    channels_last: bool = option(False, "channels-last memory format", group=_EXEC)
    compile: bool = option(False, "torch.compile the model", group=_EXEC)
    sync_bn: bool | None = option(None, "SyncBatchNorm (default: the method's choice, on "
                                   "CUDA with >1 process only)", group=_EXEC)
    seed: int = option(0, "random seed", group=_EXEC)
    output: str = option("runs/pretrain", "run folder (config, checkpoints, metrics, "
                          "backbone export)", group=_EXEC)
    save_every: int = option(1, "checkpoint every N epochs", group=_EXEC, low=1)
    keep_checkpoints: int = option(2, "epoch checkpoints kept", group=_EXEC, low=1)
    snapshots: str = option("none", "also keep the method's weights for localization "
                             "studies: 'passes' (at every box pass) or 'epochs' (every "
                             "epoch), in RUN/snapshots/", group=_EXEC,
                             choices=("none", "passes", "epochs"))
    knn_every: int = option(1, "kNN monitor every N epochs (0 disables it)", group=_EXEC,
                             low=0)
    knn_k: int = option(KNN_K, "neighbours of the kNN monitor", group=_EXEC, low=1)
    knn_temperature: float = _positive(KNN_TEMPERATURE,
                                       "temperature of the kNN monitor's vote weights", _EXEC)
    knn_max_train: int | None = option(10000, "at most this many train images in the kNN "
                                        "bank (null: all)", group=_EXEC, low=1)
    pictures: int = option(8, "images in the box picture after each box pass (0: none)",
                            group=_EXEC, low=0)
    log_with: str | None = option(None, "Accelerate tracker, e.g. 'tensorboard'",
                                   group=_EXEC)
    progress: bool = option(True, "progress bars (shown on a terminal only; logs get one "
                             "line per epoch)", group=_EXEC)

    def resolved_alpha(self) -> float | None:
        """The crop's Beta parameter: ``alpha`` or the crop mode's default (None: rcrop)."""
        if self.crop == "rcrop":
            return None
        return self.alpha if self.alpha is not None else default_alpha(self.crop)

    def resolved_image_size(self) -> int:
        """``image_size`` or the view preset's size."""
        if self.image_size is not None:
            return int(self.image_size)
        return view_preset(self.views)[0].size

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` of the view preset (also what an export records)."""
        recipe = view_preset(self.views)[0]
        return tuple(recipe.mean), tuple(recipe.std)

    def resolved_localizer_kwargs(self) -> dict[str, Any]:
        """``localizer_kwargs``, or where unset the default localizer's default options
        (:data:`~timm_ccrop.localize.DEFAULT_LOCALIZER_OPTIONS`) and none for the others."""
        if self.localizer_kwargs is not None:
            return dict(self.localizer_kwargs)
        return dict(DEFAULT_LOCALIZER_OPTIONS) if self.localizer == DEFAULT_LOCALIZER else {}

    def dropped_localizer_defaults(self) -> dict[str, Any]:
        """The default localizer's default options that ``localizer_kwargs`` leaves out
        (given options replace the defaults, they are not merged): what a user who wrote
        ``{stage: -2}`` may not know they turned off. Empty for other localizers."""
        if self.localizer != DEFAULT_LOCALIZER or self.localizer_kwargs is None:
            return {}
        return {key: value for key, value in DEFAULT_LOCALIZER_OPTIONS.items()
                if key not in self.localizer_kwargs}

    def with_pinned_defaults(self) -> TrainConfig:
        """This config with the defaults that depend on other settings written out: the
        localizer's options (where ``localizer_kwargs`` is unset) and the box momentum.
        What a run records, so that a later change of the project's defaults never changes
        what a saved run means on resume."""
        pinned: dict[str, Any] = {"box_momentum": self.resolved_box_momentum()}
        if self.localizer_kwargs is None and self.uses_model_boxes():
            pinned["localizer_kwargs"] = self.resolved_localizer_kwargs()
        return self.replace(**pinned)

    def resolved_box_momentum(self) -> float:
        """``box_momentum``, or where unset 1 when the first box pass reads the random-init
        network (model boxes, ``box_warmup_epochs=0``: its boxes are kept, because on
        per-image photographs later passes got worse) and 0 otherwise (the paper's
        replacement; also what every config saved before the key existed meant)."""
        if self.box_momentum is not None:
            return float(self.box_momentum)
        random_init_boxes = self.uses_model_boxes() and self.box_warmup_epochs == 0
        return 1.0 if random_init_boxes else 0.0

    def uses_model_boxes(self) -> bool:
        """Whether the run crops with boxes its model's maps give (a localizer runs)."""
        return self.crop == "ccrop" and self.box_source == "model"

    def resolved_schedule(self) -> tuple[int, int]:
        """``(box_warmup_epochs, loc_interval)``: the warm-up as set (default 0, a box pass
        before epoch 1; None: 20% of training, the paper's); the interval 20% of training,
        except for harvested boxes, 1 (reading them costs nothing, so every epoch after the
        warm-up); a value the user set always wins."""
        fifth = max(1, self.epochs // 5)
        warmup = fifth if self.box_warmup_epochs is None else self.box_warmup_epochs
        default_interval = 1 if self.harvests_boxes() else fifth
        interval = default_interval if self.loc_interval is None else self.loc_interval
        return warmup, interval

    def harvests_boxes(self) -> bool:
        """Whether the boxes come from maps harvested in the training forward (``ccrop``
        with model boxes and ``localizer='harvest'``): no separate box pass."""
        return self.uses_model_boxes() and self.localizer == "harvest"

    def uses_boxes_from(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) crops with the boxes (official: after the warm-up)."""
        warmup, _ = self.resolved_schedule()
        return self.crop == "ccrop" and epoch >= warmup + 1

    def box_update_due(self, epoch: int) -> bool:
        """Whether boxes are recomputed after ``epoch`` (1-based; 0 is before the first
        epoch, due with ``box_warmup_epochs=0`` only): at the end of the warm-up,
        then every interval, never after the last epoch. Counting the interval from the
        warm-up (the official code counts from epoch 0; the same where the warm-up is a
        multiple of the interval, as in every official recipe) means a short warm-up never
        crops with stale whole-image boxes until the next multiple of the interval."""
        return (
            self.crop == "ccrop"
            and self.box_source == "model"
            and epoch != self.epochs
            and self.on_box_schedule(epoch)
        )

    def on_box_schedule(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) is the warm-up's last epoch or a whole number of
        intervals after it (where box passes and ``snapshots='passes'`` fall)."""
        warmup, interval = self.resolved_schedule()
        return epoch >= warmup and (epoch - warmup) % interval == 0

    def problems(self) -> list[str]:
        """Every field that breaks its declared type, choices or bounds, one line each
        (and a localizer that cannot be built with its options)."""
        problems = field_problems(self)
        if self.harvests_boxes() and self.box_warmup_epochs == 0:
            problems.append("box_warmup_epochs=0 (the default: a box pass before epoch 1) "
                            "has no maps to read with --localizer harvest, which harvests "
                            "them while training: add --box-warmup-epochs null (20% of "
                            "training) or a number >= 1")
        if not problems and self.uses_model_boxes():
            try:
                self.build_localizer()
            except ValueError as err:
                problems.append(str(err))
        return problems

    def build_localizer(self) -> Localizer:
        """The run's localizer: ``localizer`` with :meth:`resolved_localizer_kwargs`. It
        owns every setting of the maps and boxes (stage, reduction, threshold, ...)."""
        return create_localizer(self.localizer, **self.resolved_localizer_kwargs())

    def validate(self) -> None:
        """Reject invalid settings up front, naming each bad value and its valid range.

        The checks are the fields' declared :class:`Option` s (the same ones the command
        line is built from); raises one ValueError listing every problem on one line.
        """
        problems = self.problems()
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON friendly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the list of known ones.

        A number that YAML 1.1 leaves a string (``5e-4``) is read as the float it means;
        the keys of older versions are read as they meant (:func:`upgrade_config_values`).
        """
        values = upgrade_config_values(values)
        options = {item.name: item for item in config_options()}
        unknown = sorted(set(values) - set(options))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(options)}")
        return cls(**{key: _yaml_number(options[key], value) for key, value in values.items()})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (unknown keys rejected)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


def _yaml_number(option: Option, value: Any) -> Any:
    if option.kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def config_options() -> tuple[Option, ...]:
    """The declared :class:`Option` of every :class:`TrainConfig` field, in field order."""
    return options_of(TrainConfig)


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``zoo/recipes``."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


#: Keys of configs written before 2026-12 and their defaults: the localizer's settings
#: now live in ``localizer_kwargs`` only.
LEGACY_LOCALIZER_KEYS: dict[str, Any] = {"threshold": None, "reduction": None, "stage": -1}


#: The default localizer's options when configs still carried the legacy keys.
LEGACY_DEFAULT_LOCALIZER_OPTIONS: dict[str, Any] = {"background": "median"}
#: Keys renamed since 2026-12: the box schedule's warm-up sits beside the lr's warm-up.
RENAMED_KEYS: dict[str, str] = {"warmup_epochs": "box_warmup_epochs"}


def _renamed_keys(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with renamed keys under their new names (a FutureWarning names them)."""
    old = [key for key in RENAMED_KEYS if key in values]
    if not old:
        return values
    clash = [key for key in old if RENAMED_KEYS[key] in values]
    if clash:
        raise ValueError(f"config keys {clash} and {[RENAMED_KEYS[k] for k in clash]} are the "
                         "same setting (the first is its old name); keep only the second")
    warnings.warn(f"config keys {', '.join(old)} are read as "
                  f"{', '.join(RENAMED_KEYS[k] for k in old)} (renamed 2026-12)",
                  FutureWarning, stacklevel=4)
    return {RENAMED_KEYS.get(key, key): value for key, value in values.items()}


def upgrade_config_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the keys of older versions read as they meant: renamed keys
    (:data:`RENAMED_KEYS`) under their new names; ``threshold``,
    ``reduction`` and ``stage`` beside the localizer (an old run's config.yaml or
    checkpoint) become ``localizer_kwargs`` entries, as the old config built its
    localizer (given ``localizer_kwargs`` win), with a FutureWarning; at their defaults
    they are dropped silently."""
    values = _renamed_keys(values)
    legacy = {key: values[key] for key in LEGACY_LOCALIZER_KEYS if key in values}
    if not legacy:
        return values
    if values.get("localizer", DEFAULT_LOCALIZER) == DEFAULT_LOCALIZER \
            and values.get("localizer_kwargs") is None:
        # what an unset localizer_kwargs meant when these keys were written (the default's
        # options of 2026-11-30 to 2026-12-07), not what it means today
        values = {**values, "localizer_kwargs": dict(LEGACY_DEFAULT_LOCALIZER_OPTIONS)}
    upgraded = {key: value for key, value in values.items() if key not in legacy}
    moved = {key: value for key, value in legacy.items()
             if value != LEGACY_LOCALIZER_KEYS[key]}
    if moved:
        current = TrainConfig(localizer=upgraded.get("localizer", DEFAULT_LOCALIZER),
                              localizer_kwargs=upgraded.get("localizer_kwargs"))
        given = current.resolved_localizer_kwargs()  # they win, as in the old config
        upgraded["localizer_kwargs"] = {**given, **{key: value for key, value in moved.items()
                                                    if key not in given}}
        warnings.warn(f"config keys {', '.join(sorted(moved))} are read as localizer_kwargs "
                      f"{upgraded['localizer_kwargs']} (they are localizer options since "
                      "2026-12: write --localizer-kwargs)", FutureWarning, stacklevel=3)
    return upgraded


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file (a recipe, or ``--print-config``'s output).

    A ``description`` key is dropped; unknown keys are a ValueError naming the file; keys
    of older versions come back upgraded (:func:`upgrade_config_values`).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist or is not a file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: "
                         f"{' '.join(str(err).split())}") from err
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must be a mapping of config keys, got "
                         f"{type(values).__name__}")
    values.pop("description", None)
    try:
        values = upgrade_config_values(values)
        TrainConfig.from_dict(values)  # unknown keys fail here, naming the file's mistakes
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return values


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """A recipe's settings as a dict, by name (``zoo/recipes/NAME.yaml``) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"recipe {name_or_path!r} not found at {path}; available: {list_recipes()}"
        )
    return load_config_file(path)
