"""Which split a comparison scores, and the evaluation of one backbone on it.

A dataset with a labelled held-out split (``test`` for CIFAR, STL-10 and the generated
sets; ``val`` for Tiny-ImageNet and folder trees with ``val/`` or ``test/``) is scored on
it, exactly as ``timm-ccrop eval`` does by default. A folder without one is scored on a
seeded validation carve-out of its train split (``timm-ccrop eval --test-split train
--val-fraction F``: the probes are fitted on the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import DatasetSpec, build_dataset, default_eval_split, parse_data_spec
from ..evaluation import EvalConfig, run_evaluation

__all__ = ["Scoring", "choose_scoring", "evaluate_backbone"]

TRAIN_SPLIT = "train"


@dataclass(frozen=True)
class Scoring:
    """The split the probes are scored on: the dataset's ``split`` (``carved`` False), or
    a ``val_fraction`` carve-out of the train split, seeded by the cell's seed."""

    split: str
    carved: bool = False
    val_fraction: float = 0.0

    def eval_settings(self) -> dict[str, Any]:
        """The keywords of :class:`EvalConfig` that choose the scored split (none for a
        held-out split: the evaluation's own default)."""
        if not self.carved:
            return {}
        return {"test_split": TRAIN_SPLIT, "val_fraction": self.val_fraction}

    @property
    def key(self) -> str:
        """The eval.json entry scored (``'test'`` or ``'val'``)."""
        return "val" if self.carved else "test"

    def signature(self) -> dict[str, Any]:
        """What a stored cell must match (empty for the held-out split, as cells stored
        before carve-outs existed)."""
        return {"scored": {"val_fraction": self.val_fraction}} if self.carved else {}

    def describe(self) -> str:
        """One sentence for the report."""
        if self.carved:
            return (f"the dataset has no held-out split, so kNN and the linear probe are "
                    f"fitted on {1 - self.val_fraction:.0%} of the train split and scored "
                    f"on the other {self.val_fraction:.0%} (seeded by the cell's seed, the "
                    "same images for every arm of a seed); pretraining saw those images "
                    "without labels")
        return (f"kNN and the linear probe are fitted on the train split and scored on the "
                f"held-out `{self.split}` split")


def choose_scoring(spec: str | DatasetSpec, val_fraction: float) -> Scoring:
    """The dataset's held-out split where it has one, else a carve-out of the train split
    (a folder without ``val/`` or ``test/``)."""
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    split = default_eval_split(spec)
    try:
        build_dataset(spec, split=split)
    except ValueError as error:
        if "split" not in str(error):
            raise
        return Scoring(TRAIN_SPLIT, carved=True, val_fraction=val_fraction)
    return Scoring(split)


def evaluate_backbone(backbone: str, data: str, output: Path, seed: int, workers: int,
                      scoring: Scoring) -> dict[str, Any]:
    """kNN and fast linear-probe top-1 of a frozen backbone on the scored split, and the
    device the evaluation ran on."""
    report = run_evaluation(EvalConfig(backbone=backbone, data=data, protocol="both",
                                       linear_mode="fast", output=str(output), seed=seed,
                                       num_workers=workers, progress=False,
                                       **scoring.eval_settings()))
    return {"knn": report["knn"][scoring.key]["top1"],
            "linear": report["linear"][scoring.key]["top1"],
            "device": report.get("device")}
