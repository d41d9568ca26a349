"""What a model repository may carry: an allow-list of file kinds, each checked by content.

``push`` uploads a folder that holds the weights (safetensors), config and other JSON,
the card and plain text (Markdown, text, YAML, CSV, a license), and pictures (PNG, JPEG,
GIF, WebP). Every other kind is refused, whatever it holds: an allow-list does not need
to know every format that can execute code on load (pickles, gzip'd pickles, numpy
object arrays, ...). A file is checked by its bytes, not only its name: a pickle named
``notes.txt`` (protocol 0 is plain ASCII) or ``extra.safetensors`` is refused, as are
symlinks that leave the folder or loop.
"""

from __future__ import annotations

import json
import pickletools
import zipfile
from collections.abc import Callable
from pathlib import Path

from safetensors import safe_open

__all__ = ["ALLOWED_KINDS", "PICKLE_SUFFIXES", "file_problems", "is_pickle"]

#: Pickle-based weight files: never exported, never uploaded.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt")
#: The first byte of a pickle of protocol 2 and later (then the protocol number).
_PICKLE_PROTO = 0x80
_PICKLE_PROTOCOLS = range(2, 6)
#: The pickle inside a torch.save zip archive (``ARCHIVE/data.pkl``).
_TORCH_ZIP_PICKLE = "data.pkl"
#: Opcodes with which a pickle imports (and so can call) anything.
_IMPORTING_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_TEXT_SUFFIXES = (".md", ".txt", ".yaml", ".yml", ".csv", ".cff", ".jsonl")
_TEXT_NAMES = ("LICENSE", "NOTICE", "CITATION", "AUTHORS")
_IMAGE_MAGIC = {".png": (b"\x89PNG\r\n\x1a\n",), ".jpg": (b"\xff\xd8\xff",),
                ".jpeg": (b"\xff\xd8\xff",), ".gif": (b"GIF87a", b"GIF89a"),
                ".webp": (b"RIFF",)}
#: The kinds a model repository may carry, as the refusal names them.
ALLOWED_KINDS = ("safetensors weights", "JSON", "plain text (" + ", ".join(_TEXT_SUFFIXES)
                 + ", " + ", ".join(_TEXT_NAMES) + ")",
                 "images (" + ", ".join(_IMAGE_MAGIC) + ")")


def _text_pickle(data: bytes) -> bool:
    """Whether ``data`` is a complete text pickle (protocol 0/1) that imports something."""
    seen: set[str] = set()
    try:
        for opcode, _, _ in pickletools.genops(data):
            seen.add(opcode.name)
            if opcode.name == "STOP":
                return bool(seen & _IMPORTING_OPCODES)
    except Exception:  # ValueError & co: not a pickle (the usual case for text)
        return False
    return False


def is_pickle(path: Path) -> bool:
    """Whether ``path`` holds a pickle, judged by its bytes: a protocol 2-5 header, a
    protocol 0/1 pickle that imports something, or a zip holding ``*/data.pkl``
    (``torch.save``'s format), so a renamed ``.pt`` is caught."""
    try:
        data = path.read_bytes()
        if len(data) >= 2 and data[0] == _PICKLE_PROTO and data[1] in _PICKLE_PROTOCOLS:
            return True
        if _text_pickle(data):
            return True
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name == _TORCH_ZIP_PICKLE or name.endswith("/" + _TORCH_ZIP_PICKLE)
                       for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # unreadable: the kind check refuses it


def _safetensors_problem(path: Path) -> str | None:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            list(handle.keys())
    except Exception as err:  # SafetensorError, OSError: not a safetensors file
        return f"is not a safetensors file ({type(err).__name__})"
    return None


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _json_problem(path: Path) -> str | None:
    text = _text(path)
    try:
        json.loads(text if text is not None else "\x00")
    except ValueError:
        return "is not UTF-8 JSON"
    return None


def _text_problem(path: Path) -> str | None:
    return None if _text(path) is not None else "is not UTF-8 plain text"


def _image_problem(path: Path) -> str | None:
    with open(path, "rb") as handle:
        head = handle.read(16)
    magic = _IMAGE_MAGIC[path.suffix.lower()]
    ok = any(head.startswith(m) for m in magic)
    if path.suffix.lower() == ".webp":
        ok = ok and head[8:12] == b"WEBP"
    return None if ok else f"is not a {path.suffix.lower().lstrip('.').upper()} image"


def _checker(path: Path) -> Callable[[Path], str | None] | None:
    """The content check of ``path``'s kind; None: the kind is not allowed."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _safetensors_problem
    if suffix == ".json":
        return _json_problem
    if suffix in _TEXT_SUFFIXES or (not suffix and path.name.upper() in _TEXT_NAMES):
        return _text_problem
    if suffix in _IMAGE_MAGIC:
        return _image_problem
    return None


def file_problems(folder: Path, files: list[Path]) -> list[str]:
    """What keeps ``files`` (in ``folder``, as an upload would send them) out of a model
    repository: pickles (by name or content), kinds outside the allow-list or whose
    bytes are not of their kind, symlinks that loop or lead out of the folder."""
    root = folder.resolve()
    pickles, escaping, loops, wrong_kind, wrong_bytes = [], [], [], [], []
    for path in files:
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):  # a loop (RuntimeError before Python 3.13)
                loops.append(name)
                continue
            if not target.is_relative_to(root):
                escaping.append(f"{name} -> {target}")
                continue
        if path.is_dir():
            continue
        if path.name.lower().endswith(PICKLE_SUFFIXES) or is_pickle(path):
            pickles.append(name)
            continue
        check = _checker(path)
        if check is None:
            wrong_kind.append(name)
            continue
        try:
            problem = check(path)
        except OSError as err:
            problem = f"cannot be read ({err.strerror or err})"
        if problem:
            wrong_bytes.append(f"{name} {problem}")
    problems = []
    if pickles:
        problems.append(f"pickle-based files are not published: {', '.join(pickles)} "
                        "(the weights go as model.safetensors only)")
    if wrong_kind:
        problems.append(f"files of a kind a model repository does not carry: "
                        f"{', '.join(wrong_kind)} (allowed: {'; '.join(ALLOWED_KINDS)}); "
                        "move them out of the folder")
    if wrong_bytes:
        problems.append(f"files whose bytes are not of their kind: {'; '.join(wrong_bytes)}")
    if escaping:
        problems.append(f"symlinks leading out of the folder are not published: "
                        f"{', '.join(escaping)} (copy the file in instead)")
    if loops:
        problems.append(f"symlinks that loop or lead nowhere: {', '.join(loops)} (remove them)")
    return problems
