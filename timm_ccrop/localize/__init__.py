"""Localization: heatmaps and object boxes from any timm backbone's own feature maps.

- :mod:`.hooks`: forward hooks on a stage and the NCHW conversion of every family;
- :mod:`.heatmaps`: channel reductions, per-family defaults, heatmaps and the box rule;
- :mod:`.localizers`: pluggable localizers (map source + box rule) and their registry;
  a localizer owns which map makes the box, its settings on a model
  (:mod:`.resolved`) and its map size;
- :mod:`.boxpass`: the sharded pass over a dataset that gives every image its box;
- :mod:`.harvest`: boxes from maps harvested in the training forward (no extra pass).
"""

from . import ccam, ddt  # noqa: F401  (register the localizers)
from .boxpass import LocalizationResult, eval_transform, localize_dataset, localize_loader
from .harvest import (
    HARVEST_RATE,
    HARVEST_RESOLUTION,
    Harvester,
    HarvestLocalizer,
    HeatmapBank,
    MapCapture,
    harvester_for,
    paste_maps,
)
from .heatmaps import (
    REDUCTIONS,
    LocalizationDefaults,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    reduce_channels,
)
from .hooks import FeatureHook, resolve_stage, to_nchw
from .localizers import (
    DEFAULT_LOCALIZER,
    DEFAULT_LOCALIZER_OPTIONS,
    LOCALIZERS,
    ComponentRule,
    Localizer,
    MapSource,
    UnionRule,
    create_localizer,
    default_localizer,
    describe_localizer,
    register_localizer,
)
from .resolved import ResolvedLocalizer

__all__ = [
    "HARVEST_RATE",
    "HARVEST_RESOLUTION",
    "HarvestLocalizer",
    "Harvester",
    "HeatmapBank",
    "MapCapture",
    "harvester_for",
    "paste_maps",
    "DEFAULT_LOCALIZER",
    "DEFAULT_LOCALIZER_OPTIONS",
    "LOCALIZERS",
    "REDUCTIONS",
    "ComponentRule",
    "Localizer",
    "ResolvedLocalizer",
    "MapSource",
    "UnionRule",
    "create_localizer",
    "default_localizer",
    "describe_localizer",
    "register_localizer",
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
]
