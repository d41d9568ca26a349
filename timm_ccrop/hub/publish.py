"""Publishing an exported folder on the Hugging Face Hub: validate, then upload.

:func:`push_folder` validates a folder (:func:`validate_export`) and uploads it with
``huggingface_hub``; on any network or authentication failure it raises
:class:`PushError` with every token scrubbed from the message, and leaves the folder as
it was. Nothing is uploaded unless model.safetensors matches the sha256 recorded in its
metadata and every file is of a kind a model repository carries, checked by its bytes
(:mod:`.contents`: safetensors, JSON, plain text, images; no pickle whatever its name), and
no symlink loops or leads out of the folder (symlinks that stay inside are allowed). The
token is huggingface_hub's own; it is never read, printed or written here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huggingface_hub
from huggingface_hub import errors as hub_errors
from safetensors.torch import load_file

from ..models.backbones import CONFIG_NAME, WEIGHTS_NAME, WeightsIntegrityError, verify_weights_file
from .card import CARD_NAME, card_measurements, read_card_metadata
from .contents import PICKLE_SUFFIXES, file_problems
from .release import HubExportError, check_repo_id

__all__ = ["PICKLE_SUFFIXES", "PushError", "PushResult", "push_folder", "scrub_token",
           "validate_export"]

#: huggingface_hub's errors of a failed push (those this version has).
_HUB_ERRORS = ("HfHubHTTPError", "LocalTokenNotFoundError", "OfflineModeIsEnabled",
               "RepositoryNotFoundError", "RevisionNotFoundError", "BadRequestError")
#: The HTTP clients huggingface_hub may use, and their base error.
_HTTP_ERRORS = (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException"))


class PushError(RuntimeError):
    """The Hub could not be reached or refused the upload; the local folder is unchanged."""


def _upload_files(folder: Path) -> list[Path]:
    """The files an upload sends: every regular, non-hidden file (recursively)."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def _config_problems(folder: Path) -> list[str]:
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        return [f"{CONFIG_NAME} is missing"]
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        return [f"{CONFIG_NAME} does not parse as JSON: {err}"]
    problems = []
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        problems.append(f"{CONFIG_NAME} has no 'architecture'")
    if not isinstance(config, dict) or not isinstance(config.get("pretrained_cfg"), dict):
        problems.append(f"{CONFIG_NAME} has no 'pretrained_cfg'")
    return problems


def _weights_problems(folder: Path, verify: bool) -> list[str]:
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        return [f"{WEIGHTS_NAME} is missing"]
    try:
        tensors = verify_weights_file(weights) if verify else load_file(str(weights))
    except WeightsIntegrityError as err:  # its message names the file and the fix
        return [str(err)]
    except Exception as err:  # ValueError, SafetensorError, OSError
        return [f"{WEIGHTS_NAME} does not load: {type(err).__name__}: {err}"]
    return [] if tensors else [f"{WEIGHTS_NAME} holds no tensors"]


def _published_paths(folder: Path) -> list[Path]:
    """Every non-hidden entry under ``folder`` (symlinks included, not followed): what an
    upload could send, each judged by :func:`~timm_ccrop.hub.contents.file_problems`."""
    return [path for path in sorted(folder.rglob("*"))
            if not any(part.startswith(".") for part in path.relative_to(folder).parts)]


def _card_problems(folder: Path, require_metrics: bool) -> list[str]:
    card = folder / CARD_NAME
    if not card.is_file():
        return [f"{CARD_NAME} (the model card) is missing: write the folder with "
                "`timm-ccrop export RUN_DIR --out DIR`"]
    meta = read_card_metadata(card)
    if meta is None:
        return [f"{CARD_NAME} has no YAML front-matter (--- ... --- at the top)"]
    problems = [f"{CARD_NAME} front-matter lacks '{key}'"
                for key in ("library_name", "license", "tags") if not meta.get(key)]
    if require_metrics and not card_measurements(meta):
        problems.append(f"{CARD_NAME} holds no measured numbers (no model-index results): run "
                        "`timm-ccrop eval` on these weights, then export again so the card "
                        "picks up eval.json")
    return problems


def validate_export(folder: str | Path, require_metrics: bool = False,
                    verify: bool = True) -> list[str]:
    """What is wrong with ``folder`` as a Hub model repo (empty list: nothing).

    With ``verify``, model.safetensors must match the sha256 recorded in its metadata
    (files without one pass). Every other file must be of a kind a model repository
    carries, checked by its bytes (:mod:`timm_ccrop.hub.contents`): pickles are refused
    by content as well as by name; symlinks that loop or resolve outside the folder are
    refused, those that stay inside are allowed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    return [*_config_problems(folder), *_weights_problems(folder, verify),
            *_card_problems(folder, require_metrics),
            *file_problems(folder, _published_paths(folder))]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


@dataclass
class PushResult:
    """What a push did (or, with ``dry_run``, would do)."""

    repo_id: str
    files: list[tuple[str, int]]
    private: bool
    revision: str | None
    create_pr: bool
    dry_run: bool
    commit_url: str | None = None
    pr_url: str | None = None

    def summary(self) -> list[str]:
        """The lines ``timm-ccrop push`` prints."""
        total = sum(size for _, size in self.files)
        head = "would upload" if self.dry_run else "uploaded"
        where = f"https://huggingface.co/{self.repo_id}"
        lines = [f"{head} {len(self.files)} files ({_human(total)}) to {where}"
                 + (f" (revision {self.revision})" if self.revision else "")
                 + (" as a pull request" if self.create_pr else "")
                 + (" [private]" if self.private else "")]
        lines += [f"  {name:<40} {_human(size):>10}" for name, size in self.files]
        if self.commit_url:
            lines.append(f"commit: {self.commit_url}")
        if self.pr_url:
            lines.append(f"pull request: {self.pr_url}")
        if self.dry_run:
            lines.append("dry run: nothing was created or uploaded")
        return lines


def _network_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    errors += [getattr(hub_errors, name) for name in _HUB_ERRORS if hasattr(hub_errors, name)]
    for module, name in _HTTP_ERRORS:
        # Optional: whichever HTTP client this huggingface_hub uses is installed, the others
        # need not be, so they are looked up by name rather than imported.
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def scrub_token(text: str) -> str:
    """``text`` with any Hugging Face token removed (error messages may quote one)."""
    tokens = {os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}
    with contextlib.suppress(Exception):  # no token stored: nothing more to remove
        tokens.add(huggingface_hub.get_token())
    for token in tokens:
        if token:
            text = text.replace(token, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "hf_***", text)


def _maybe_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _upload(api: Any, folder: Path, result: PushResult, commit_message: str | None) -> Any:
    """create_repo, the branch, upload_folder; a failure is a PushError naming the step."""
    repo_id, revision = result.repo_id, result.revision
    step = "create the repo"
    try:
        api.create_repo(repo_id, repo_type="model", private=result.private, exist_ok=True)
        if revision and revision != "main" and not result.create_pr:
            step = f"create the branch {revision!r}"
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        step = "upload the folder"
        return api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
            create_pr=result.create_pr, allow_patterns=[name for name, _ in result.files],
            commit_message=commit_message or f"Upload {folder.name} with timm-ccrop",
        )
    except _network_errors() as err:
        raise PushError(
            f"could not {step} on the Hugging Face Hub for {repo_id}: {type(err).__name__}: "
            f"{scrub_token(str(err)).rstrip('. ') or 'no details'}. Check the network and "
            "your token (HF_TOKEN or `hf auth login`) and that it may write to the repo. The "
            f"local folder {folder} was not changed."
        ) from err


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False,
                revision: str | None = None, create_pr: bool = False, dry_run: bool = False,
                require_metrics: bool = False, commit_message: str | None = None,
                api: Any = None, verify: bool = True) -> PushResult:
    """Validate ``folder`` and upload it to the Hub model repo ``repo_id``.

    ``HfApi().create_repo(exist_ok=True)`` (private when asked), a branch for ``revision``
    when it is not ``main`` and no pull request is asked, then ``upload_folder``. The
    token is huggingface_hub's own (``HF_TOKEN`` or ``hf auth login``); it is never read,
    printed or written here.

    Args:
        api: an ``HfApi`` (tests pass a stand-in); default ``HfApi()``.
        verify: check model.safetensors against the sha256 in its metadata (False for
            weights edited on purpose).

    Raises:
        HubExportError: the folder or repo id is invalid (nothing was contacted).
        PushError: the Hub could not be reached or refused; the folder is untouched.
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    problems = validate_export(folder, require_metrics=require_metrics, verify=verify)
    if problems:
        raise HubExportError(f"refusing to push {folder}:\n  - " + "\n  - ".join(problems))
    result = PushResult(repo_id=repo_id,
                        files=[(p.relative_to(folder).as_posix(), p.stat().st_size)
                               for p in _upload_files(folder)],
                        private=private, revision=revision, create_pr=create_pr,
                        dry_run=dry_run)
    if dry_run:
        return result
    info = _upload(api if api is not None else huggingface_hub.HfApi(), folder, result,
                   commit_message)
    result.commit_url = _maybe_str(getattr(info, "commit_url", None))
    result.pr_url = _maybe_str(getattr(info, "pr_url", None))
    return result
