"""ContrastiveCrop as a crop mode of timm's transform factory.

timm has no registry for transforms: ``transforms_imagenet_train`` checks
``train_crop_mode in {'rrc', 'rkrc', 'rkrr'}`` with a plain assert. ``create_transform``
looks that function up in its module's globals on every call, and ``create_loader``
calls ``create_transform``, so wrapping that one name reaches both entry points.

:func:`register_timm_crop_mode` (run on ``import timm_ccrop``) installs the wrapper once.
The wrapper handles only the modes below and hands every other call to timm untouched:

- ``'ccrop'`` / ``'ccrop-a<alpha>'``: ContrastiveCrop (alpha 0.6 by default; e.g.
  ``'ccrop-a0.1'`` for the official small-dataset configs, following timm's
  ``auto_augment`` string convention, since timm's factory has no keyword for alpha),
- ``'simccrop'`` / ``'simccrop-a<alpha>'``: SimCCrop (alpha 0.1 by default).

For a ccrop mode it builds timm's own ``'rrc'`` pipeline and replaces its first
transform, the random resized crop, with ContrastiveCrop of the same size, scale, ratio
and interpolation, so flip, colour jitter, grayscale, blur, normalisation, prefetcher
and ``separate=True`` behave exactly as for ``'rrc'``.

:func:`create_transform` offers the same without any global change, plus
``ccrop_alpha=``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import timm
import timm.data.transforms_factory as timm_factory
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms as tv_transforms

from .transforms import ContrastiveCrop, SimCCrop, check_alpha

__all__ = [
    "CCROP_MODES",
    "create_transform",
    "is_registered",
    "parse_crop_mode",
    "register_timm_crop_mode",
    "unregister_timm_crop_mode",
]

CCROP_MODES = {"ccrop": ContrastiveCrop, "simccrop": SimCCrop}
_ORIGINAL_ATTR = "_timm_ccrop_original"


def parse_crop_mode(mode: Any) -> tuple[str, float | None] | None:
    """Parse ``'ccrop'``, ``'ccrop-a0.1'``, ``'simccrop'``... into ``(kind, alpha)``.

    Returns None for every mode that is not ours (timm's 'rrc', 'rkrc', None...).
    """
    if not isinstance(mode, str):
        return None
    kind, _, suffix = mode.partition("-")
    if kind not in CCROP_MODES:
        return None
    if not suffix:
        return kind, None
    if not suffix.startswith("a") or len(suffix) < 2:
        raise ValueError(
            f"train_crop_mode {mode!r}: the only option is alpha, written "
            f"'{kind}-a<alpha>' (e.g. '{kind}-a0.1')"
        )
    try:
        alpha = float(suffix[1:])
    except ValueError as err:
        raise ValueError(
            f"train_crop_mode {mode!r}: alpha {suffix[1:]!r} is not a number; "
            f"write e.g. '{kind}-a0.6'"
        ) from err
    return kind, check_alpha(alpha)


def _make_crop(kind: str, alpha: float | None, rrc: RandomResizedCropAndInterpolation) -> Any:
    crop_class = CCROP_MODES[kind]
    kwargs = {} if alpha is None else {"alpha": alpha}
    crop = crop_class(rrc.size, scale=rrc.scale, ratio=rrc.ratio, **kwargs)
    crop.interpolation = rrc.interpolation  # keeps timm's 'random' choice list as it is
    return crop


def _swap_crop(transform: Any, kind: str, alpha: float | None) -> Any:
    """Replace the random resized crop that starts timm's 'rrc' pipeline."""
    primary = transform[0] if isinstance(transform, tuple) else transform
    steps = getattr(primary, "transforms", None)
    if not (
        isinstance(primary, tv_transforms.Compose)
        and steps
        and type(steps[0]) is RandomResizedCropAndInterpolation
    ):
        raise RuntimeError(
            f"timm_ccrop expected timm's 'rrc' training pipeline to be a Compose starting "
            f"with RandomResizedCropAndInterpolation, but timm {timm.__version__} built "
            f"{type(primary).__name__} {steps[:1] if steps else ''}. This timm version "
            "changed the pipeline timm_ccrop extends: please report it and use a timm "
            "version listed in timm_ccrop's README."
        )
    steps[0] = _make_crop(kind, alpha, steps[0])
    return transform


def _bind(function: Any, args: tuple, kwargs: dict) -> inspect.BoundArguments:
    return inspect.signature(function).bind(*args, **kwargs)


def _ccrop_train_wrapper(original: Any) -> Any:
    @functools.wraps(original)
    def transforms_imagenet_train(*args: Any, **kwargs: Any) -> Any:
        bound = _bind(original, args, kwargs)
        parsed = parse_crop_mode(bound.arguments.get("train_crop_mode"))
        if parsed is None:
            return original(*args, **kwargs)
        if bound.arguments.get("naflex"):
            raise ValueError("train_crop_mode='ccrop' does not support naflex=True")
        bound.arguments["train_crop_mode"] = "rrc"
        return _swap_crop(original(*bound.args, **bound.kwargs), *parsed)

    setattr(transforms_imagenet_train, _ORIGINAL_ATTR, original)
    return transforms_imagenet_train


def is_registered() -> bool:
    """Whether timm's factory currently knows the ccrop modes."""
    return hasattr(timm_factory.transforms_imagenet_train, _ORIGINAL_ATTR)


def register_timm_crop_mode() -> None:
    """Teach ``timm.data.create_transform`` and ``create_loader`` the ccrop modes.

    Idempotent. Raises RuntimeError if timm's factory no longer has the shape this
    relies on (a ``transforms_imagenet_train`` with ``img_size`` and ``train_crop_mode``).
    """
    if is_registered():
        return
    original = getattr(timm_factory, "transforms_imagenet_train", None)
    parameters = inspect.signature(original).parameters if callable(original) else {}
    if not {"img_size", "train_crop_mode"} <= set(parameters):
        raise RuntimeError(
            f"timm {timm.__version__}: timm.data.transforms_factory.transforms_imagenet_train "
            "is missing or no longer takes img_size/train_crop_mode, so timm_ccrop cannot add "
            "train_crop_mode='ccrop'. Use timm_ccrop.create_transform or report the timm version."
        )
    timm_factory.transforms_imagenet_train = _ccrop_train_wrapper(original)


def unregister_timm_crop_mode() -> None:
    """Restore timm's own ``transforms_imagenet_train`` (mostly for tests)."""
    if is_registered():
        timm_factory.transforms_imagenet_train = getattr(
            timm_factory.transforms_imagenet_train, _ORIGINAL_ATTR
        )


def create_transform(*args: Any, ccrop_alpha: float | None = None, **kwargs: Any) -> Any:
    """``timm.data.create_transform`` with the ccrop modes, without touching timm.

    Takes exactly timm's arguments (``input_size``, ``is_training``, ``train_crop_mode``,
    ``scale``, ``color_jitter_prob``, ``separate``, ``use_prefetcher``, ...) plus
    ``ccrop_alpha``, which sets alpha for ``'ccrop'``/``'simccrop'`` (the same as writing
    ``'ccrop-a<alpha>'``). Other modes are passed to timm unchanged.
    """
    bound = _bind(timm_factory.create_transform, args, kwargs)
    mode = bound.arguments.get("train_crop_mode")
    parsed = parse_crop_mode(mode)
    if parsed is None:
        if ccrop_alpha is not None:
            raise ValueError(
                f"ccrop_alpha={ccrop_alpha} only applies to train_crop_mode 'ccrop' or "
                f"'simccrop', got train_crop_mode={mode!r}"
            )
        return timm_factory.create_transform(*args, **kwargs)
    kind, alpha = parsed
    if ccrop_alpha is not None:
        if alpha is not None and alpha != float(ccrop_alpha):
            raise ValueError(
                f"alpha given twice: train_crop_mode={mode!r} and ccrop_alpha={ccrop_alpha}; "
                "keep one"
            )
        alpha = check_alpha(ccrop_alpha)
    arguments = bound.arguments
    augmented = arguments.get("is_training", False) and not arguments.get("no_aug", False)
    if not augmented:
        arguments["train_crop_mode"] = "rrc"
        return timm_factory.create_transform(*bound.args, **bound.kwargs)
    if arguments.get("naflex") or (
        arguments.get("tf_preprocessing") and arguments.get("use_prefetcher")
    ):
        raise ValueError(f"train_crop_mode={mode!r} does not support naflex or tf_preprocessing")
    # timm builds its own 'rrc' pipeline ('rrc' passes the registered wrapper untouched).
    arguments["train_crop_mode"] = "rrc"
    transform = timm_factory.create_transform(*bound.args, **bound.kwargs)
    return _swap_crop(transform, kind, alpha)
