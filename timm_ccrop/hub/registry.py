"""The zoo's entries as timm pretrained tags, in timm's own registry.

Importing :mod:`timm_ccrop` registers every zoo entry as a pretrained tag of its
architecture, so that::

    import timm, timm_ccrop
    timm.list_pretrained("*ccrop*")
    model = timm.create_model("resnet_tiny_cifar.ccrop_simclr_synthetic", pretrained=True)

loads the entry's weights: the bundled ``zoo/weights/NAME/model.safetensors`` of the
installed package (``pretrained_cfg['file']``) or, once published, the Hub repo
(``pretrained_cfg['hf_hub_id']``).

timm has no public call that adds one tag to an architecture: ``register_model`` would
clear the tags timm already has for it. So tags are added to timm's registry structures
directly (``_model_pretrained_cfgs``, ``_model_has_pretrained``, ``_model_with_tags`` and
the architecture's ``DefaultCfg``). A tag timm itself owns is never replaced, a tag is
never registered for weights that are not there (the entry is skipped with a warning),
and the architecture's default tag is left as it was.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from timm.models import PretrainedCfg
from timm.models import _registry as timm_registry  # no public API adds a single tag

from .. import models  # noqa: F401  (the CIFAR-stem architectures are registered first)
from ..backbones import CONFIG_NAME, WEIGHTS_NAME
from .release import HubExportError, check_repo_id
from .zoo import INDEX_NAME, ZooEntry, load_zoo, zoo_root

__all__ = [
    "add_pretrained_tag",
    "register_zoo",
    "registered_zoo_tags",
    "remove_pretrained_tag",
    "zoo_pretrained_cfg",
]

_PRETRAINED_CFG_FIELDS = frozenset(f.name for f in dataclasses.fields(PretrainedCfg))
# name -> the PretrainedCfg this module put into timm's registry (so re-registration is
# idempotent and removal never touches timm's own tags).
_REGISTERED: dict[str, Any] = {}


def zoo_pretrained_cfg(entry: ZooEntry, root: Path | None = None) -> dict[str, Any]:
    """The pretrained_cfg of an entry: its release's, then the bundled config.json's (plus
    ``file``), then the entry's ``input``; ``hf_hub_id`` for weights only on the Hub."""
    cfg = {k: v for k, v in entry.release.pretrained_cfg().items() if v not in (None, ())}
    folder = entry.bundled_folder(root)
    if folder is not None and (folder / CONFIG_NAME).is_file():
        cfg.update(json.loads((folder / CONFIG_NAME).read_text()).get("pretrained_cfg") or {})
    cfg.update({k: v for k, v in entry.input.items() if k != "pool_size"})
    if folder is not None:
        cfg["file"] = str(folder / WEIGHTS_NAME)
    elif entry.hf_hub_id:
        cfg["hf_hub_id"] = entry.hf_hub_id
        cfg["hf_hub_filename"] = WEIGHTS_NAME
    cfg["tag"] = entry.tag
    cfg["architecture"] = entry.architecture
    return {key: tuple(value) if isinstance(value, list) else value
            for key, value in cfg.items()}


def _add_to_default_cfg(architecture: str, tag: str, pretrained_cfg: PretrainedCfg) -> None:
    default_cfg = timm_registry._model_default_cfgs.get(architecture)
    if default_cfg is not None:  # appended: the architecture's default tag stays first
        if tag not in default_cfg.tags:
            default_cfg.tags.append(tag)
        default_cfg.cfgs[tag] = pretrained_cfg
        default_cfg.is_pretrained = True


def add_pretrained_tag(architecture: str, tag: str, cfg: Mapping[str, Any]) -> str:
    """Add ``architecture.tag`` to timm's registry without touching its other tags.

    Raises ValueError when the architecture is unknown, when the cfg names no weights, or
    when the name is a tag timm already has that this module did not add.
    """
    if architecture not in timm_registry._model_entrypoints:
        raise ValueError(f"timm has no architecture {architecture!r}")
    name = f"{architecture}.{tag}"
    existing = timm_registry._model_pretrained_cfgs.get(name)
    if existing is not None and _REGISTERED.get(name) is not existing:
        raise ValueError(f"timm already has pretrained weights {name!r}; not replacing them")
    unknown = sorted(set(cfg) - _PRETRAINED_CFG_FIELDS)
    if unknown:
        raise ValueError(f"unknown pretrained_cfg fields {unknown}")
    pretrained_cfg = dataclasses.replace(PretrainedCfg(**dict(cfg)), architecture=architecture,
                                         tag=tag)
    if not pretrained_cfg.has_weights:
        raise ValueError(f"{name}: the pretrained_cfg names no weights (file, url or hf_hub_id)")
    timm_registry._model_pretrained_cfgs[name] = pretrained_cfg
    timm_registry._model_has_pretrained.add(name)
    with_tags = timm_registry._model_with_tags[architecture]
    if name not in with_tags:
        with_tags.append(name)
    _add_to_default_cfg(architecture, tag, pretrained_cfg)
    _REGISTERED[name] = pretrained_cfg
    return name


def remove_pretrained_tag(name: str) -> bool:
    """Undo :func:`add_pretrained_tag` for ``name``; timm's own tags are never removed."""
    if name not in _REGISTERED:
        return False
    ours = _REGISTERED.pop(name)
    architecture, tag = name.split(".", 1)
    if timm_registry._model_pretrained_cfgs.get(name) is not ours:
        return True
    del timm_registry._model_pretrained_cfgs[name]
    timm_registry._model_has_pretrained.discard(name)
    with_tags = timm_registry._model_with_tags.get(architecture)
    if with_tags is not None and name in with_tags:
        with_tags.remove(name)
    default_cfg = timm_registry._model_default_cfgs.get(architecture)
    if default_cfg is not None and default_cfg.cfgs.get(tag) is ours:
        del default_cfg.cfgs[tag]
        if tag in default_cfg.tags:
            default_cfg.tags.remove(tag)
        default_cfg.is_pretrained = any(c.has_weights for c in default_cfg.cfgs.values())
    return True


def registered_zoo_tags() -> list[str]:
    """The names this module added to timm's registry."""
    return sorted(_REGISTERED)


def _skip_reason(entry: ZooEntry, root: Path) -> str | None:
    """Why ``entry`` must not be registered (its weights are not there), or None."""
    folder = entry.bundled_folder(root)
    if folder is not None and not (folder / WEIGHTS_NAME).is_file():
        return f"its weights {folder / WEIGHTS_NAME} do not exist"
    if folder is None:
        try:
            check_repo_id(str(entry.hf_hub_id or ""))
        except HubExportError as err:
            return f"no bundled weights and {err}"
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


def register_zoo(entries: Iterable[ZooEntry] | None = None, root: Path | None = None) -> list[str]:
    """Register zoo entries as timm pretrained tags; returns the names registered.

    An entry whose weights are missing (bundled file absent, malformed Hub id), whose
    architecture timm does not know, or whose name timm already owns is skipped with a
    warning. Calling it again re-registers the same names (idempotent).
    """
    root = root or zoo_root()
    names = []
    for entry in _index_entries(root) if entries is None else entries:
        reason = _skip_reason(entry, root)
        if reason is None:
            try:
                names.append(add_pretrained_tag(entry.architecture, entry.tag,
                                                zoo_pretrained_cfg(entry, root)))
                continue
            except (ValueError, TypeError, OSError) as err:
                reason = str(err)
        warnings.warn(f"timm-ccrop zoo: not registering {entry.name}: {reason}", stacklevel=2)
    return names


# Importing timm_ccrop makes the zoo's weights loadable by name (the package's contract).
register_zoo()
