"""Progress bars that never flood a log: tqdm on a terminal, nothing otherwise.

A tqdm bar redraws itself with carriage returns; written to a file or a CI log that is
thousands of partial lines. :func:`progress_bar` shows a bar only when asked to AND stderr
is a terminal (tqdm's ``disable=None``); the trainer's persistent line per epoch is what a
log keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable[Any], desc: str, enabled: bool = True,
                 **kwargs: Any) -> tqdm:
    """``tqdm(iterable)`` shown only when ``enabled`` and stderr is a terminal.

    Further keyword arguments go to tqdm (``leave``, ``total``, ...); ``leave`` defaults to
    False, so finished bars do not pile up between the per-epoch lines.
    """
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, disable=None if enabled else True, **kwargs)
