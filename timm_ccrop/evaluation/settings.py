"""The settings of an evaluation (the options of ``timm-ccrop eval``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MIN_IMAGE_SIZE, MIXED_PRECISION
from ..utils.constants import KNN_K, KNN_TEMPERATURE
from ..utils.fields import field_problems, option

__all__ = ["EVAL_GROUPS", "LINEAR_MODES", "PROTOCOLS", "EvalConfig"]

#: Values of ``--protocol``.
PROTOCOLS = ("knn", "linear", "both")
#: Values of ``--linear-mode``.
LINEAR_MODES = ("fast", "paper")
#: The option groups of ``timm-ccrop eval``, in help order.
EVAL_GROUPS = ("input", "protocol")


_INPUT, _PROBE = EVAL_GROUPS


@dataclass
class EvalConfig:
    """Settings of :func:`~timm_ccrop.evaluation.run_evaluation` (and the options of
    ``timm-ccrop eval``, generated from these fields).

    ``None`` means: from the probe recipe (``batch_size``, ``epochs``, ``lr``), from the
    model's pretrained_cfg (``image_size``, ``mean``, ``std``), ``train`` and the
    dataset's eval split (``train_split``, ``test_split``), the run's config
    (``data``: its ``eval_data`` or ``data``), next to the backbone (``output``).
    ``probe_recipe='auto'``: ``imagenet`` for inputs of 128 px and more, else ``small``.
    ``knn_temperature`` is ``T`` of the kNN vote weights ``exp(similarity / T)``.
    ``verify_weights``: check the backbone's weights against the sha256 recorded when they
    were written (False for weights edited on purpose).
    """

    backbone: str = option(
        help="a run folder (its backbone/ export, else its newest checkpoint), an exported "
             "folder (config.json + model.safetensors), a checkpoint-epoch*.pt, or a timm "
             "name: hf-hub:ORG/NAME, local-dir:PATH, ARCH.TAG (pretrained) or ARCH (random "
             "init, a baseline)", group=_INPUT)
    data: str | None = option(None, "dataset spec, e.g. cifar10:PATH, folder:PATH, "
                              "synthetic:num_samples=2000 (default: a run folder's own)",
                              group=_INPUT)
    protocol: str = option("both", "kNN, linear probe or both", group=_PROBE,
                           choices=PROTOCOLS)
    output: str | None = option(None, "folder for eval.json, or a .json file (default: next "
                                "to the backbone: the run or export folder)", group=_INPUT)
    image_size: int | None = option(None, "input size in pixels (default: the model's "
                                    "pretrained_cfg)", group=_INPUT, low=MIN_IMAGE_SIZE)
    mean: tuple[float, ...] | None = option(None, "normalisation mean R G B (default: the "
                                            "model's pretrained_cfg)", group=_INPUT, length=3)
    std: tuple[float, ...] | None = option(None, "normalisation std R G B (default: the "
                                           "model's pretrained_cfg)", group=_INPUT, length=3,
                                           low=0, low_open=True)
    batch_size: int | None = option(None, "global batch of the probe and of feature "
                                    "extraction (default: the probe recipe's, 512)",
                                    group=_PROBE, low=1)
    num_workers: int = option(2, "data loader processes", group=_PROBE, low=0)
    knn_k: int = option(KNN_K, "neighbours (clipped to the train set size)", group=_PROBE,
                        low=1)
    knn_temperature: float = option(KNN_TEMPERATURE, "temperature T of the vote weights "
                                    "exp(sim / T)", group=_PROBE, low=0, low_open=True)
    linear_mode: str = option("fast", "fast: the recipe's SGD on features cached once "
                              "without augmentation; paper: images through the frozen "
                              "backbone every epoch with RandomResizedCrop + flip",
                              group=_PROBE, choices=LINEAR_MODES)
    probe_recipe: str = option("auto", "probe recipe name or YAML path; auto: imagenet for "
                               "inputs >= 128 px, else small", group=_PROBE)
    epochs: int | None = option(None, "probe epochs (default: the recipe's, 100; the lr "
                                "decays at 60% and 80%)", group=_PROBE, low=1)
    lr: float | None = option(None, "probe lr (default: the recipe's: 10 small, 30 imagenet)",
                              group=_PROBE, low=0, low_open=True)
    augment: bool = option(True, "paper mode: train augmentation (--no-augment: eval "
                           "transform)", group=_PROBE)
    val_fraction: float = option(0.0, "carve this seeded fraction of the train split out as "
                                 "a validation split for choosing hyper-parameters; reported "
                                 "too (0: none)", group=_INPUT, low=0, high=1, high_open=True)
    seed: int = option(0, "seed of the validation split, probe init and order, and of a "
                       "randomly initialised backbone", group=_PROBE)
    train_split: str | None = option(None, "labelled split the kNN bank / probe trains on "
                                     "(default: train)", group=_INPUT)
    test_split: str | None = option(None, "labelled split to report (default: the dataset's "
                                    "eval split)", group=_INPUT)
    mixed_precision: str = option("no", "autocast of the backbone's forward passes",
                                  group=_PROBE, choices=MIXED_PRECISION)
    progress: bool = option(True, "progress bars (shown on a terminal only)", group=_PROBE)
    verify_weights: bool = option(True, "check the weights against the sha256 recorded when "
                                  "they were written (--no-verify-weights: for weights edited "
                                  "on purpose)", group=_INPUT)

    def validate(self) -> None:
        """Raise one ValueError that lists every invalid setting (the fields' declared
        types, choices and bounds, the same ones the command line is built from)."""
        problems = field_problems(self)
        if problems:
            raise ValueError("invalid evaluation settings: " + "; ".join(problems))

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols to run: ``'both'`` is ``('knn', 'linear')``."""
        return ("knn", "linear") if self.protocol == "both" else (self.protocol,)
