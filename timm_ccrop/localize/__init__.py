"""Heatmaps and boxes from any timm backbone's own feature maps."""

from .localize import (  # noqa: F401
    REDUCTIONS,
    FeatureHook,
    LocalizationDefaults,
    LocalizationResult,
    eval_transform,
    feature_heatmaps,
    heatmap_boxes,
    localization_defaults,
    localize_dataset,
    localize_loader,
    reduce_channels,
    resolve_stage,
    to_nchw,
    unwrap_model,
    warn_if_too_coarse,
)
