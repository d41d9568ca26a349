"""Frozen-backbone evaluation: features, kNN, linear probes, the run and its report.

Modules, from the primitives up:

- :mod:`.knn`: the weighted cosine kNN classifier and top-k accuracy;
- :mod:`.features`: pooled features of a dataset (sharded under Accelerate);
- :mod:`.splits`: labelled splits, the seeded validation carve-out, dataset labels;
- :mod:`.recipes`: linear-probe recipes (``zoo/probes/*.yaml``) and their augmentation;
- :mod:`.probe`: the linear probe on cached features (``fast``) or on images (``paper``);
- :mod:`.sources`: where a backbone comes from (run, export, checkpoint, timm name);
- :mod:`.settings`: :class:`EvalConfig`, the options of ``timm-ccrop eval``;
- :mod:`.report`: ``eval.json``'s path, closing fields and writing, the summary lines;
- :mod:`.run`: :func:`run_evaluation`, the whole evaluation as a list of steps.
"""

from .features import extract_features, fits_on, sum_over_processes
from .knn import knn_accuracy, knn_predict, topk_accuracy
from .probe import LinearProbeResult, ProbeSettings, linear_probe_features, linear_probe_images
from .recipes import (
    ProbeRecipe,
    is_augmenting,
    list_probe_recipes,
    load_probe_recipe,
    probe_train_transform,
)
from .results import EVAL_FORMAT, results_path, summary_lines, write_results
from .run import EvalInputs, Preprocessing, resolve_inputs, run_evaluation
from .settings import LINEAR_MODES, PROTOCOLS, EvalConfig
from .sources import BackboneSource, load_backbone, resolve_backbone_source
from .splits import dataset_targets, labelled_split, split_validation, warn_if_single_class

__all__ = [
    "EVAL_FORMAT",
    "LINEAR_MODES",
    "PROTOCOLS",
    "BackboneSource",
    "EvalConfig",
    "EvalInputs",
    "LinearProbeResult",
    "Preprocessing",
    "ProbeRecipe",
    "ProbeSettings",
    "dataset_targets",
    "extract_features",
    "fits_on",
    "is_augmenting",
    "knn_accuracy",
    "knn_predict",
    "labelled_split",
    "linear_probe_features",
    "linear_probe_images",
    "list_probe_recipes",
    "load_backbone",
    "load_probe_recipe",
    "probe_train_transform",
    "results_path",
    "resolve_backbone_source",
    "resolve_inputs",
    "run_evaluation",
    "split_validation",
    "warn_if_single_class",
    "sum_over_processes",
    "summary_lines",
    "topk_accuracy",
    "write_results",
]
