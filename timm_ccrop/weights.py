"""Small helpers for weight files and state dicts, shared by eval, export, zoo and the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["WRAPPER_PREFIXES", "sha256_file", "state_dict_sha256", "strip_wrapper_prefixes"]

#: Prefixes added by DDP/DataParallel and torch.compile; stripped from checkpoint keys.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(key: str) -> str:
    """``'module._orig_mod.conv1.weight'`` -> ``'conv1.weight'`` (any order, repeated)."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted names, dtypes, shapes and raw bytes of a state dict."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
