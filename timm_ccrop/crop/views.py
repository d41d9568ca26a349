"""Multi-view (Siamese) transforms built from timm's factory, and the paper's view recipes.

A multi-view transform turns one image (and its box) into a list of independently
augmented views. Each view has its own pipeline, so asymmetric recipes (BYOL: blur
always in view 1, solarize only in view 2) are a list of two pipelines. Pipelines are
made by :func:`timm_ccrop.create_transform`, i.e. timm's training pipeline with the crop
of the chosen mode in front.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.transforms import MaybePILToTensor, MaybeToTensor
from torchvision import transforms as tv_transforms

from ..utils.constants import CIFAR_MEAN, CIFAR_STD
from .factory import create_transform, parse_crop_mode
from .transforms import ContrastiveCrop, ViewGeometry, recording_step

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "VIEW_PRESETS",
    "MultiViewTransform",
    "ViewRecipe",
    "accepts_box",
    "apply_transform",
    "multi_view_transform",
    "view_transform",
]


# 'rcrop' is the paper's name for RandomResizedCrop; timm calls it 'rrc'.
_CROP_ALIASES = {"rcrop": "rrc"}
_MISSING = object()


def accepts_box(transform: Any) -> bool:
    """Whether ``transform`` takes ``(image, box)``: ContrastiveCrop first, or multi-view."""
    if isinstance(transform, (ContrastiveCrop, MultiViewTransform)):
        return True
    steps = getattr(transform, "transforms", None)
    return isinstance(transform, tv_transforms.Compose) and bool(steps) and accepts_box(steps[0])


def apply_transform(transform: Callable | None, img: Any, box: Any = None) -> Any:
    """Apply ``transform`` to ``img``, handing it the box if it can use one."""
    if transform is None:
        return img
    if accepts_box(transform):
        return transform((img, box))
    return transform(img)


class MultiViewTransform:
    """Apply one pipeline per view to the same image (and box); returns a list of views.

    Args:
        transforms: one pipeline per view (e.g. two for SimCLR/MoCo/BYOL/SimSiam).
        geometry: one :class:`~timm_ccrop.crop.transforms.ViewGeometry` per view, which the
            pipelines' recording steps write (see :func:`view_transform`); then a call
            returns ``(views, geometry)`` with ``geometry`` a float tensor ``[V, 5]``:
            each view's crop box ``(x0, y0, x1, y1)`` in the image and its flip (0 or 1).
    """

    def __init__(self, transforms: Sequence[Callable],
                 geometry: Sequence[ViewGeometry] | None = None) -> None:
        if not transforms:
            raise ValueError("MultiViewTransform needs at least one view pipeline")
        if geometry is not None and len(geometry) != len(transforms):
            raise ValueError(f"got {len(geometry)} geometry records for {len(transforms)} "
                             "views; pass one ViewGeometry per view")
        self.transforms = list(transforms)
        self.geometry = list(geometry) if geometry is not None else None

    @property
    def records_geometry(self) -> bool:
        """Whether a call returns ``(views, geometry)`` instead of the views alone."""
        return self.geometry is not None

    def __call__(self, img: Any, box: Any = _MISSING) -> list[Any] | tuple[list[Any], Any]:
        if box is _MISSING:
            img, box = img if isinstance(img, tuple) and len(img) == 2 else (img, None)
        if self.geometry is None:
            return [apply_transform(transform, img, box) for transform in self.transforms]
        views = []
        for transform, record in zip(self.transforms, self.geometry, strict=True):
            record.reset()
            views.append(apply_transform(transform, img, box))
        return views, torch.tensor([record.row() for record in self.geometry])

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        body = "".join(f"\n  view {i}: {t!r}" for i, t in enumerate(self.transforms))
        return f"{type(self).__name__}({body}\n)"


@dataclass(frozen=True)
class ViewRecipe:
    """Augmentations of one view, in timm factory terms (plus solarization)."""

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip: float = 0.5
    color_jitter: tuple[float, ...] = (0.4, 0.4, 0.4, 0.1)
    color_jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    gaussian_blur_prob: float = 0.0
    solarize_prob: float = 0.0
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD


_SMALL = ViewRecipe(size=32, mean=CIFAR_MEAN, std=CIFAR_STD)
_IMAGENET = ViewRecipe(size=224, gaussian_blur_prob=0.5)

#: The paper's recipes (../shared/REFERENCE.md section 3): one ViewRecipe per view. A dataset
#: kind names its preset (``DatasetKind.views``); timm_ccrop.data.build checks the sizes agree.
VIEW_PRESETS: dict[str, tuple[ViewRecipe, ...]] = {
    "cifar": (_SMALL, _SMALL),
    "stl10": (replace(_SMALL, size=96, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD),) * 2,
    "tiny-imagenet": (
        replace(_SMALL, size=64, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD),
    ) * 2,
    "imagenet": (_IMAGENET, _IMAGENET),
    # BYOL's asymmetric views (Grill et al. 2020): blur always / rarely, solarize only in 2.
    "byol-imagenet": (
        replace(_IMAGENET, color_jitter=(0.4, 0.4, 0.2, 0.1), gaussian_blur_prob=1.0),
        replace(
            _IMAGENET,
            color_jitter=(0.4, 0.4, 0.2, 0.1),
            gaussian_blur_prob=0.1,
            solarize_prob=0.2,
        ),
    ),
}


def view_preset(name: str) -> tuple[ViewRecipe, ...]:
    """The recipes of a preset name; the one error for an unknown preset."""
    if name not in VIEW_PRESETS:
        raise ValueError(f"views must be one of {', '.join(VIEW_PRESETS)}, got {name!r}")
    return VIEW_PRESETS[name]


def preset_recipes(preset: str | Sequence[ViewRecipe], size: int | None = None,
                   num_views: int | None = None) -> tuple[ViewRecipe, ...]:
    """One :class:`ViewRecipe` per view, from a preset name or a list of recipes.

    ``size`` overrides every view's output size; ``num_views`` cycles over the recipes
    (default: the preset's own count, two).
    """
    if isinstance(preset, str):
        recipes = view_preset(preset)
    else:
        recipes = tuple(preset)
        if not recipes or not all(isinstance(r, ViewRecipe) for r in recipes):
            raise ValueError("preset must be a preset name or a non-empty list of ViewRecipe")
    count = len(recipes) if num_views is None else int(num_views)
    if count < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if size is not None:
        recipes = tuple(replace(r, size=int(size)) for r in recipes)
    return tuple(recipes[i % len(recipes)] for i in range(count))


def _timm_crop_mode(crop_mode: str) -> str:
    mode = _CROP_ALIASES.get(crop_mode, crop_mode)
    if mode not in ("rrc",) and parse_crop_mode(mode) is None:
        raise ValueError(
            f"crop_mode must be 'rcrop' (alias 'rrc'), 'ccrop', 'simccrop' or "
            f"'ccrop-a<alpha>', got {crop_mode!r}"
        )
    return mode


def view_transform(
    recipe: ViewRecipe,
    crop_mode: str = "ccrop",
    alpha: float | None = None,
    use_prefetcher: bool = False,
    geometry: ViewGeometry | None = None,
) -> tv_transforms.Compose:
    """One view's pipeline: timm's training transform with the chosen crop in front.

    With ``geometry``, the crop and the horizontal flip are replaced by copies that record
    what they did into it (same random draws, same output); without it the pipeline is
    exactly timm's.
    """
    mode = _timm_crop_mode(crop_mode)
    pipeline = create_transform(
        recipe.size,
        is_training=True,
        train_crop_mode=mode,
        ccrop_alpha=alpha if mode != "rrc" else None,
        scale=recipe.scale,
        ratio=recipe.ratio,
        hflip=recipe.hflip,
        color_jitter=recipe.color_jitter,
        color_jitter_prob=recipe.color_jitter_prob,
        grayscale_prob=recipe.grayscale_prob,
        gaussian_blur_prob=recipe.gaussian_blur_prob,
        interpolation=recipe.interpolation,
        mean=recipe.mean,
        std=recipe.std,
        use_prefetcher=use_prefetcher,
    )
    if recipe.solarize_prob > 0:
        # timm's factory has no solarization: insert it where the image is still PIL.
        to_tensor = next(
            i
            for i, step in enumerate(pipeline.transforms)
            if isinstance(step, (MaybeToTensor, MaybePILToTensor))
        )
        pipeline.transforms.insert(
            to_tensor, tv_transforms.RandomSolarize(threshold=128, p=recipe.solarize_prob)
        )
    if geometry is not None:
        pipeline.transforms = [recording_step(step, geometry) for step in pipeline.transforms]
    return pipeline


def multi_view_transform(
    preset: str | Sequence[ViewRecipe] = "cifar",
    crop_mode: str = "ccrop",
    alpha: float | None = None,
    size: int | None = None,
    num_views: int | None = None,
    use_prefetcher: bool = False,
    geometry: bool = False,
) -> MultiViewTransform:
    """The views of a Siamese method, from a preset name or a list of :class:`ViewRecipe`.

    Args:
        preset: 'cifar' (32 px), 'stl10' (96), 'tiny-imagenet' (64), 'imagenet' (224, with
            blur) or 'byol-imagenet' (asymmetric), or one ViewRecipe per view.
        crop_mode: 'rcrop' (RandomResizedCrop), 'ccrop' or 'simccrop'.
        alpha: ContrastiveCrop's Beta parameter (default: the crop's own, 0.6 / 0.1).
        size: override the preset's output size.
        num_views: number of views (default: the preset's, two); views cycle over the
            preset's recipes.
        geometry: also return each view's crop box and flip (``(views, [V, 5] tensor)``,
            see :class:`MultiViewTransform`); the views are the same as without it.
    """
    recipes = preset_recipes(preset, size, num_views)
    records = [ViewGeometry() for _ in recipes] if geometry else None
    return MultiViewTransform(
        [
            view_transform(recipe, crop_mode, alpha, use_prefetcher,
                           records[i] if records else None)
            for i, recipe in enumerate(recipes)
        ],
        records,
    )
