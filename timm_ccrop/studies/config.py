"""``CompareConfig``: every setting of a crop comparison, declared once (type, help, group,
choices, bounds) for ``timm-ccrop compare``, the Python API and the report."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config import AUGMENT_ON, MIN_IMAGE_SIZE, TrainConfig
from ..crop.transforms import CCROP_ALPHA
from ..localize import LOCALIZERS, create_localizer
from ..methods import METHODS
from ..utils.fields import field_default, field_problems, option, options_of, tuples_from_lists
from .arms import ARMS, MODEL_BOX_ARMS, localizer_for

__all__ = ["DEFAULT_DATA", "DEFAULT_SEEDS", "GROUPS", "CompareConfig"]

#: Small objects pushed towards the borders, on one cluttered background shared by every
#: image, a colour per class: the built-in benchmark (docs/synthetic.md,
#: "Self-supervised learnability").
DEFAULT_DATA = ("synthetic:num_samples=2500,image_size=32,object_scale=0.2:0.35,"
                "center_bias=-0.5,backgrounds=1,class_colours=1")
DEFAULT_SEEDS = (0, 1, 2, 3, 4, 5)  # the 6 seeds of docs/results-6seeds.md
#: The option groups, in the order of the command's help.
GROUPS = ("grid", "the ccrop arm", "data", "training", "execution", "report")


@dataclass
class CompareConfig:
    """Settings of :func:`timm_ccrop.studies.run_compare`: the arms x seeds x methods grid,
    the data, the training budget of every cell, how cells run, where the report goes."""

    data: str = option(DEFAULT_DATA, "dataset spec (folder:PATH, cifar10:PATH, "
                       "tiny-imagenet:PATH, synthetic:..., scenes:...); with ground-truth "
                       "boxes the oracle arm, box IoU and false-positive pairs are measured "
                       "(default: the built-in small-object benchmark)", group="data")
    methods: tuple[str, ...] = option(factory=lambda: ("simclr",), help="methods compared",
                                      group="grid", choices=tuple(METHODS))
    modes: tuple[str, ...] | None = option(
        None, "arms: rcrop (the baseline), ccrop (model boxes, --localizer), ccrop-paper "
        "('paper' localizer), ccrop-harvest (harvested boxes), ccrop-gt (ground-truth boxes, "
        "the oracle), simccrop (default: rcrop ccrop, and ccrop-gt when the data has "
        "ground-truth boxes)", group="grid", choices=tuple(ARMS))
    seeds: tuple[int, ...] = option(factory=lambda: DEFAULT_SEEDS, group="grid",
                                    help="paired seeds: every arm of a seed starts from the "
                                         "same initialisation and data order")
    localizer: str = option(TrainConfig().localizer, "localizer of the 'ccrop' arm (default: "
                            "the project default)", group="the ccrop arm",
                            choices=tuple(LOCALIZERS))
    localizer_kwargs: dict[str, Any] | None = option(
        None, "options of --localizer as a YAML mapping, e.g. \"{rule: max}\" (default: the "
        "project default's options for the default localizer, none for the others)",
        group="the ccrop arm")
    val_fraction: float = option(0.2, "share of the train split held out for scoring when "
                                 "the dataset has no held-out split (a folder without "
                                 "val/ or test/)", group="data", low=0, high=1,
                                 low_open=True, high_open=True)
    image_size: int = option(32, "training image size in pixels", group="training",
                             low=MIN_IMAGE_SIZE)
    model: str = option("resnet_mini_cifar", "timm model name of the backbone",
                        group="training")
    epochs: int = option(24, "pretraining epochs of every cell", group="training", low=1)
    batch_size: int = option(128, "batch size", group="training", low=1)
    lr: float = option(0.5, "base learning rate", group="training", low=0, low_open=True)
    lr_warmup_epochs: float = option(0.0, "linear lr warm-up in epochs (0.3 with 2 warm-up "
                                     "epochs is the steadier protocol of docs/evidence.md)",
                                     group="training", low=0)
    box_warmup_epochs: int | None = option(0, "epochs of random crops before the first "
                                           "box update; 0 (the project's default): a pass "
                                           "on the random-init network before epoch 1 (the "
                                           "harvest arm, which has no maps before training, "
                                           "keeps 20%); null: 20% of training, the paper's "
                                           "schedule and the default before 2026-12-08",
                                           group="training", low=0)
    box_momentum: float | None = option(None, "box momentum of the model-box arms: each "
                                        "pass keeps this share of the old box (0: the "
                                        "paper's replacement; default: the project's, 1 "
                                        "with a box pass on the random-init network, else "
                                        "0); another value trains cells of their own "
                                        "(folder suffix '-m<momentum>')", group="training",
                                        low=0, high=1)
    alpha: float = option(CCROP_ALPHA, "Beta(alpha, alpha) of the crop centre of "
                          "the ccrop arms; another value trains cells of their own (folder "
                          "suffix '-a<alpha>') and reuses the rcrop cells", group="training",
                          low=0, low_open=True)
    augment_on: str = option("device", "where views are made", group="training",
                             choices=tuple(a for a in AUGMENT_ON if a != "auto"))
    workers: int = option(0, "data-loader workers per cell (0: load in the cell's process)",
                          group="execution", low=0)
    jobs: int = option(2, "cells trained at once, each in its own process (1: in this "
                       "process); on GPUs the cells are spread over the GPUs, several per "
                       "GPU when --jobs exceeds their number", group="execution", low=1)
    threads: int = option(1, "torch threads per cell process", group="execution", low=1)
    fp_threshold: float = option(0.2, "a view covering less than this share of the object's "
                                 "box makes a false-positive pair", group="report", low=0,
                                 high=1, low_open=True)
    fp_pairs: int = option(4, "view pairs sampled per image for the false-positive estimate",
                           group="report", low=1)
    runs: str = option("runs/compare", "folder of the cells (reused by a rerun)",
                       group="report")
    out: str | None = option(None, "the Markdown report; the plot and the box picture go "
                             "next to it (default: RUNS/report.md)", group="report")
    smoke_label: bool = option(False, "label the report as a smoke run that proves nothing",
                               group="report")

    def __post_init__(self) -> None:
        tuples_from_lists(self)  # lists of a YAML or JSON file are kept as tuples

    def problems(self) -> list[str]:
        """Every invalid setting, one line each (empty: valid)."""
        found = field_problems(self)
        for item in options_of(CompareConfig):
            value = getattr(self, item.name)
            if item.kind is tuple and value and len(set(value)) != len(value):
                found.append(f"{item.name} names a value twice: {list(value)}")
        return found + self._localizer_problems()

    def _localizer_problems(self) -> list[str]:
        name, options = self.resolved_localizer()
        try:
            create_localizer(name, **options)
        except (TypeError, ValueError) as error:
            return [f"localizer {name} with options {json.dumps(options)}: {error}"]
        return []

    def validate(self) -> None:
        """Raise one ValueError that lists every invalid setting."""
        found = self.problems()
        if found:
            raise ValueError("; ".join(found))

    def resolved_localizer(self) -> tuple[str, dict[str, Any]]:
        """``(name, options)`` of the 'ccrop' arm's localizer: ``localizer_kwargs``, or
        where unset the project default's options (``TrainConfig``'s rule, never copied)."""
        resolved = TrainConfig(localizer=self.localizer, localizer_kwargs=self.localizer_kwargs)
        return self.localizer, resolved.resolved_localizer_kwargs()

    def arm_box_schedule(self, mode: str) -> tuple[int | None, float]:
        """``(box_warmup_epochs, box_momentum)`` of an arm's cells: the grid's warm-up,
        except where the grid's is 0 for an arm whose localizer is ``harvest`` (it harvests
        its maps while training, so it keeps 20% of training), and the momentum as ``TrainConfig``
        resolves it (0 for arms without model boxes, which run no box pass)."""
        if mode not in MODEL_BOX_ARMS:
            return self.box_warmup_epochs, 0.0
        arm, (localizer, _) = ARMS[mode], localizer_for(mode, self.resolved_localizer())
        cell = TrainConfig(crop=arm.crop, box_source=arm.box_source, localizer=localizer,
                           box_warmup_epochs=self.box_warmup_epochs,
                           box_momentum=self.box_momentum)
        if cell.harvests_boxes() and cell.box_warmup_epochs == 0:
            cell = cell.replace(box_warmup_epochs=None)
        return cell.box_warmup_epochs, cell.resolved_box_momentum()

    def command_line(self, modes: tuple[str, ...]) -> str:
        """``timm-ccrop compare`` with every setting that differs from its default, and the
        arms, the localizer and the box warm-up always (their defaults change over time):
        the command that reproduces a report."""
        pinned = {"modes": modes, "localizer": self.localizer,
                  "localizer_kwargs": self.resolved_localizer()[1],
                  "box_warmup_epochs": self.box_warmup_epochs}
        words = ["timm-ccrop", "compare"]
        for item in fields(self):
            value = pinned.get(item.name, getattr(self, item.name))
            if item.name not in pinned and value == field_default(item):
                continue
            flag = "--" + item.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, (tuple, list)):
                words += [flag, *map(str, value)]
            elif isinstance(value, dict):
                words += [flag, json.dumps(value, sort_keys=True)]
            else:  # a pinned None is written: null means a schedule of its own
                words += [flag, "null" if value is None else str(value)]
        return shlex.join(words)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (what a cell's child process is given)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CompareConfig:
        """A config from :meth:`to_dict`'s output; unknown keys are a ValueError."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown compare setting(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(sorted(known))}")
        return cls(**values)
