"""Localization: heatmaps and object boxes from any timm backbone's own feature maps.

- :mod:`.hooks`: forward hooks on a stage and the NCHW conversion of every family;
- :mod:`.heatmaps`: channel reductions, per-family defaults, heatmaps and the box rule;
- :mod:`.boxpass`: the sharded pass over a dataset that gives every image its box.
"""

from .boxpass import LocalizationResult, eval_transform, localize_dataset, localize_loader
from .heatmaps import (
    REDUCTIONS,
    LocalizationDefaults,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    reduce_channels,
)
from .hooks import FeatureHook, resolve_stage, to_nchw, warn_if_too_coarse

__all__ = [
    "REDUCTIONS",
    "FeatureHook",
    "LocalizationDefaults",
    "LocalizationResult",
    "eval_transform",
    "feature_heatmaps",
    "heatmap_boxes",
    "localization_defaults",
    "localize_dataset",
    "localize_loader",
    "reduce_channels",
    "resolve_stage",
    "to_nchw",
    "warn_if_too_coarse",
]
