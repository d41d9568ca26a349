"""Atomic files and folders: the only way the package replaces what is on disk.

Files are written through a synced temporary sibling and a rename, so a crash leaves the
old or the new file, never a torn one. Folders (exports) are built in a staging sibling
and swapped in whole. A folder is replaced only when everything in it is something the
tool writes there (``owned``): a folder holding anything else (another run, a user's
notes) is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path

__all__ = [
    "EXPORT_FOLDER_FILES",
    "OutputExistsError",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_writable_folder",
    "foreign_entries",
    "replace_folder",
    "staging_folder",
]

#: What the package writes into an exported backbone folder (timm's Hub layout, the card,
#: an official export's boxes, the eval report of those weights): all that ``--overwrite``
#: may replace there.
EXPORT_FOLDER_FILES = ("config.json", "model.safetensors", "README.md", "boxes.csv",
                       "eval.json")
#: Names of the temporaries the package's own writers leave after a crash.
TEMPORARY_PATTERNS = (".*.tmp-*", ".*.old-*", ".*.signing")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary sibling and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def ensure_writable_folder(folder: Path, what: str, advice: str) -> None:
    """Create ``folder`` if needed and prove it writable (a probe file, written and
    removed), so that a long job fails before its work, not after. Raises one-line
    OSErrors naming ``what`` and ``advice``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"cannot write {what}: {folder} is a file, not a folder; "
                                 f"{advice}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise type(err)(f"cannot write {what}: {folder} is not writable ({reason}); "
                        f"{advice}") from err


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _normal_permissions(folder: Path) -> None:
    """mkdtemp makes a 0700 folder (and some writers 0600 files): give the folder the
    usual permissions (0755 / 0644 under the process umask)."""
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o644) & ~mask)


class OutputExistsError(FileExistsError, ValueError):
    """An output file or folder exists and may not be replaced (a user error)."""


def foreign_entries(folder: Path, owned: Collection[str]) -> list[str]:
    """The names in ``folder`` that are neither in ``owned`` (what the tool writes there)
    nor a temporary of the package's writers; sorted. Empty for a missing folder."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(entry.name for entry in folder.iterdir()
                  if entry.name not in owned
                  and not any(fnmatch.fnmatch(entry.name, p) for p in TEMPORARY_PATTERNS))


def _check_replaceable(target: Path, overwrite: bool, owned: Collection[str] | None) -> None:
    """Refuse to replace ``target`` unless ``overwrite`` and it is a real folder holding
    only ``owned`` names (None: anything may be replaced, for callers that own the
    folder whole)."""
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise OutputExistsError(f"{target} already exists; pass overwrite=True (--overwrite) "
                                "to replace it")
    if not target.is_dir() or target.is_symlink():
        raise OutputExistsError(f"{target} exists and is not a folder; not replacing it")
    foreign = foreign_entries(target, owned) if owned is not None else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f", ... ({len(foreign)} in all)"
                                          if len(foreign) > 5 else "")
        raise OutputExistsError(
            f"{target} holds files this export does not write ({shown}); --overwrite "
            "replaces only a folder that holds an export and nothing else: move them out "
            "or choose another folder (nothing was changed)")


def replace_folder(new: Path, target: Path, overwrite: bool,
                   owned: Collection[str] | None = None) -> None:
    """Rename ``new`` to ``target``; an existing target is swapped out only at the end,
    and only when it holds nothing but ``owned`` names (see :func:`staging_folder`)."""
    _normal_permissions(new)
    target = Path(target)
    _check_replaceable(target, overwrite, owned)
    if not (target.exists() or target.is_symlink()):
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging_folder(target: Path, overwrite: bool,
                   owned: Collection[str] | None = None) -> Iterator[Path]:
    """A temporary folder next to ``target`` (same file system), removed on failure.

    An existing ``target`` is refused up front unless ``overwrite``, and, when ``owned``
    names what the tool writes there, unless it holds nothing else (a user's files are
    never deleted). Call :func:`replace_folder` (with the same ``owned``) inside the
    block to move the staged folder into place.
    """
    target = Path(target)
    _check_replaceable(target, overwrite, owned)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
