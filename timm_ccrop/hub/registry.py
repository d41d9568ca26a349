"""The zoo's entries as loadable ``ARCHITECTURE.TAG`` names, through timm's public API only.

Importing :mod:`timm_ccrop` registers every entry of ``zoo/models.yaml`` whose weights are
there. Two routes, depending on whose architecture it is:

* **Ours** (``resnet_tiny_cifar``, ``resnet18_cifar``, ...: ``models.CIFAR_MODEL_NAMES``):
  the entry's cfg becomes a tag in the architecture's ``default_cfgs``, the way timm
  declares its own tags (:func:`timm_ccrop.models.cifar.register_cifar_models`, i.e.
  ``generate_default_cfgs`` + ``register_model``). timm itself then knows the name::

      timm.list_pretrained("*_synthetic")
      timm.create_model("resnet_mini_cifar.simclr_ccrop_synthetic", pretrained=True)

* **timm's own** (``resnet18``, ``vit_small_patch16_224``, ...): timm has no public call
  that adds a tag to an architecture another module registered (``register_model`` again
  would replace that module's tags), so nothing is written into timm's registry.
  :func:`create_model` loads the name instead::

      timm_ccrop.create_model("resnet18.ccrop_byol_imagenet", pretrained=True)

  which is ``timm.create_model("resnet18", pretrained_cfg_overlay=<the entry's cfg>)``.

The weights are the installed package's bundled ``zoo/weights/NAME/model.safetensors``
(``file``) or, when only published, the Hub repo (``hf_hub_id``). An entry whose weights
are not there, whose architecture timm does not know, or whose name timm already owns is
skipped with a warning: a name is never registered for weights that cannot load.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import timm
from timm.models import PretrainedCfg, get_pretrained_cfg, is_model, model_entrypoint
from torch import nn

from ..models import cifar
from ..models.backbones import CONFIG_NAME, WEIGHTS_NAME
from ..utils.integrity import verify_pretrained_file
from .release import HubExportError, check_repo_id
from .zoo import INDEX_NAME, ZooEntry, load_zoo, zoo_root

__all__ = [
    "create_model",
    "register_zoo",
    "registered_zoo_tags",
    "unregister_zoo",
    "zoo_pretrained_cfg",
]

_PRETRAINED_CFG_FIELDS = tuple(f.name for f in dataclasses.fields(PretrainedCfg))
# Facts of an architecture, not of its weights: an overlay on a timm architecture keeps
# timm's values unless the entry sets them.
_ARCHITECTURE_FIELDS = frozenset({"first_conv", "classifier", "fixed_input_size", "pool_size"})
# name -> the tagged cfg handed to cifar.register_cifar_models (our architectures).
_OURS: dict[str, dict[str, Any]] = {}
# name -> the pretrained_cfg_overlay create_model applies (timm's architectures).
_OVERLAYS: dict[str, dict[str, Any]] = {}


def zoo_pretrained_cfg(entry: ZooEntry, root: Path | None = None) -> dict[str, Any]:
    """The pretrained_cfg fields an entry sets: its release's, then the bundled
    config.json's, then the entry's ``input``; ``file`` (the bundled weights) or
    ``hf_hub_id`` + ``hf_hub_filename`` for weights only on the Hub."""
    if not isinstance(entry, ZooEntry):
        raise ValueError(f"expected a ZooEntry (timm_ccrop.hub.load_zoo()), got "
                         f"{type(entry).__name__}")
    cfg = {k: v for k, v in entry.release.pretrained_cfg().items() if v not in (None, ())}
    folder = entry.bundled_folder(root)
    if folder is not None and (folder / CONFIG_NAME).is_file():
        cfg.update(json.loads((folder / CONFIG_NAME).read_text()).get("pretrained_cfg") or {})
    inp = entry.input if isinstance(entry.input, Mapping) else {}  # entry_problems names it
    cfg.update({k: v for k, v in inp.items() if k != "pool_size"})
    for source in ("file", "url", "hf_hub_id", "hf_hub_filename", "state_dict", "source"):
        cfg.pop(source, None)  # the entry's weights, below, are the only source
    if folder is not None:
        cfg["file"] = str(folder / WEIGHTS_NAME)
    elif entry.hf_hub_id:
        cfg["hf_hub_id"] = entry.hf_hub_id
        cfg["hf_hub_filename"] = WEIGHTS_NAME
    cfg["tag"] = entry.tag
    cfg["architecture"] = entry.architecture
    return {key: tuple(value) if isinstance(value, list) else value
            for key, value in cfg.items() if value is not None}


def _overlay(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A pretrained_cfg_overlay that describes only the entry's weights: every field of
    timm's default tag that describes ITS weights (hf_hub_id, url, test_input_size,
    origin_url, paper_ids, ...) is cleared, so none of it leaks into ours."""
    overlay = {name: None for name in _PRETRAINED_CFG_FIELDS if name not in _ARCHITECTURE_FIELDS}
    overlay.update(cfg)
    return overlay


def _timm_owns(name: str) -> bool:
    """timm (or another package) already has a pretrained cfg called ``name``."""
    try:
        return get_pretrained_cfg(name) is not None
    except RuntimeError:  # the architecture has cfgs, but not this tag
        return False


def _skip_reason(entry: ZooEntry, root: Path) -> str | None:
    """Why ``entry`` must not be registered, or None."""
    folder = entry.bundled_folder(root)
    if folder is not None and not (folder / WEIGHTS_NAME).is_file():
        return f"its weights {folder / WEIGHTS_NAME} do not exist"
    if folder is None:
        try:
            check_repo_id(str(entry.hf_hub_id or ""))
        except HubExportError as err:
            return f"no bundled weights and {err}"
    if not is_model(entry.architecture):
        return f"timm has no architecture {entry.architecture!r}"
    if entry.architecture in cifar.CIFAR_MODEL_NAMES:
        owner = getattr(model_entrypoint(entry.architecture), "__module__", None)
        if owner != cifar.__name__:
            return f"timm's {entry.architecture!r} was registered by {owner}, not timm-ccrop"
    elif _timm_owns(entry.name):
        return f"timm already has pretrained weights {entry.name!r}; choose another tag"
    return None


def _index_entries(root: Path) -> list[ZooEntry]:
    index = root / INDEX_NAME
    if not index.is_file():
        return []
    try:
        return load_zoo(index)
    except (ValueError, OSError) as err:
        warnings.warn(f"timm-ccrop zoo: cannot read {index}: {err}", stacklevel=3)
        return []


def _entry_cfg(entry: ZooEntry, root: Path) -> dict[str, Any]:
    """The entry's pretrained_cfg, checked as timm would check it (TypeError / ValueError)."""
    cfg = zoo_pretrained_cfg(entry, root)
    PretrainedCfg(**cfg)  # unknown fields raise TypeError here, not at load time
    return cfg


def _declare_ours(names: list[str]) -> list[str]:
    """Hand every tag of our architectures to ``register_cifar_models``; those of ``names``
    that timm does not resolve to their zoo weights (the architecture turned out to be
    someone else's), dropped with a warning."""
    cifar.register_cifar_models(_OURS)
    dropped = []
    for name in names:
        wanted = _OURS[name]
        try:
            cfg = get_pretrained_cfg(name)
        except RuntimeError:  # the architecture has cfgs, but not this tag
            cfg = None
        if cfg is None or (cfg.file, cfg.hf_hub_id) != (wanted.get("file"),
                                                         wanted.get("hf_hub_id")):
            warnings.warn(f"timm-ccrop zoo: not registering {name}: timm does not resolve it "
                          "to the zoo's weights", stacklevel=3)
            del _OURS[name]
            dropped.append(name)
    return dropped


def register_zoo(entries: Iterable[ZooEntry] | None = None, root: Path | None = None) -> list[str]:
    """Make zoo entries loadable by name; returns the names registered by this call.

    Args:
        entries: the entries (default: the installed ``zoo/models.yaml``).
        root: the folder bundled weights are relative to (default: the installed zoo).

    Tags of our architectures go into timm's registry through ``default_cfgs``
    (``timm.create_model('ARCH.TAG', pretrained=True)``); tags of timm's architectures load
    with :func:`create_model`. Adds to what was registered before; calling it again with
    the same entries changes nothing. An entry whose weights are missing (bundled file
    absent, malformed Hub id), whose architecture timm does not know, or whose name timm
    already owns is skipped with a warning.
    """
    if root is not None and not isinstance(root, (str, Path)):
        raise ValueError(f"root must be a folder path, got {root!r}")
    root = Path(root) if root is not None else zoo_root()
    if entries is None:
        entries = _index_entries(root)
    elif isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Iterable):
        raise ValueError(f"entries must be a list of ZooEntry (timm_ccrop.hub.load_zoo()), "
                         f"got {type(entries).__name__}")
    names, ours = [], []
    for entry in entries:
        if not isinstance(entry, ZooEntry):
            raise ValueError(f"register_zoo takes ZooEntry objects (timm_ccrop.hub.load_zoo()), "
                             f"got {type(entry).__name__}")
        reason = _skip_reason(entry, root)
        if reason is None:
            try:
                cfg = _entry_cfg(entry, root)
            except (ValueError, TypeError, OSError) as err:
                reason = f"its pretrained_cfg is invalid: {err}"
        if reason is not None:
            warnings.warn(f"timm-ccrop zoo: not registering {entry.name}: {reason}", stacklevel=2)
            continue
        if entry.architecture in cifar.CIFAR_MODEL_NAMES:
            _OURS[entry.name] = cfg
            ours.append(entry.name)
        else:
            _OVERLAYS[entry.name] = _overlay(cfg)
        names.append(entry.name)
    dropped = _declare_ours(ours) if ours else []
    return [name for name in names if name not in dropped]


def unregister_zoo(names: Iterable[str]) -> list[str]:
    """Undo :func:`register_zoo` for ``names``; returns those that were registered.

    Only names this module registered are touched: timm's own tags stay as they are.
    """
    if isinstance(names, str):
        raise ValueError(f"unregister_zoo takes a list of names, got the string {names!r}; "
                         f"write unregister_zoo([{names!r}])")
    names = list(names)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise ValueError(f"unregister_zoo takes 'ARCH.TAG' strings, got {bad[0]!r}")
    removed = [name for name in names if _OURS.pop(name, None) is not None
               or _OVERLAYS.pop(name, None) is not None]
    if any(name.split(".", 1)[0] in cifar.CIFAR_MODEL_NAMES for name in removed):
        cifar.register_cifar_models(_OURS)
    return removed


def registered_zoo_tags() -> list[str]:
    """The zoo names that load: ``timm.create_model`` for ours, :func:`create_model` for all."""
    return sorted({*_OURS, *_OVERLAYS})


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` that also knows the zoo's tags of timm's own architectures.

    Args:
        name: a timm model name. For ``ARCH.TAG`` of a zoo entry on a timm architecture
            (``resnet18.ccrop_...``), the model is ``timm.create_model(ARCH,
            pretrained=pretrained, pretrained_cfg_overlay=<the entry's cfg>, **kwargs)``;
            for every other name this is exactly ``timm.create_model(name, ...)``.
        pretrained: load the weights.
        **kwargs: passed on to ``timm.create_model``.

    With ``pretrained``, the weights file (``local-dir:``, a bundled zoo file, a Hub file
    in the local cache) is checked against the sha256 recorded in its metadata when it
    was exported: a corrupted file raises :class:`~timm_ccrop.utils.integrity.
    WeightsIntegrityError` instead of loading.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model name must be a non-empty string such as 'resnet18' or "
                         f"'ARCH.TAG' (timm_ccrop.hub.registered_zoo_tags()), got {name!r}")
    if not isinstance(pretrained, bool):
        raise ValueError(f"pretrained must be True or False, got {pretrained!r}")
    overlay = _OVERLAYS.get(name)
    if overlay is None:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    else:
        given = sorted({"pretrained_cfg", "pretrained_cfg_overlay"} & set(kwargs))
        if given:
            raise ValueError(f"{name} is a zoo model whose pretrained_cfg is the zoo's; drop "
                             f"{', '.join(given)} or create {name.split('.', 1)[0]!r} instead")
        model = timm.create_model(name.split(".", 1)[0], pretrained=pretrained,
                                  pretrained_cfg_overlay=dict(overlay), **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if pretrained and cfg.get("architecture") not in cifar.CIFAR_MODEL_NAMES:
        # our architectures' entrypoint checked the file already; timm's do not
        verify_pretrained_file(cfg)
    return model


# Importing timm_ccrop makes the zoo's weights loadable by name (the package's contract).
register_zoo()
