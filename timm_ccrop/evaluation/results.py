"""The results of an evaluation (``eval.json``): where the file goes, that it can be
written there (checked before any work), its closing fields, writing it atomically, and
the lines ``timm-ccrop eval`` prints."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import accelerate
import timm
import torch

from ..runs import atomic_write_text, ensure_writable_folder
from ..version import __version__
from .settings import EvalConfig
from .sources import BackboneSource

__all__ = ["EVAL_FORMAT", "ReportWriteError", "check_report_target", "finish_results",
           "results_path", "result_lines", "summary_lines", "versions", "write_results",
           "written_line"]

#: Version of the eval.json layout.
EVAL_FORMAT = 1


def results_path(config: EvalConfig, source: BackboneSource) -> Path:
    """``--output`` (a .json file, or a folder for ``eval.json``), else ``eval.json`` in
    the run or export folder, else ``runs/eval/NAME/eval.json`` for a timm name."""
    if config.output:
        path = Path(config.output).expanduser()
        return path if path.suffix.lower() == ".json" else path / "eval.json"
    if source.folder is not None:
        return source.folder / "eval.json"
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in source.name)
    return Path("runs") / "eval" / safe / "eval.json"


class ReportWriteError(OSError):
    """``eval.json`` could not be written; :attr:`report` holds the numbers all the same."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def _existing_ancestor(folder: Path) -> Path:
    """``folder`` or the nearest of its parents that exists (as anything)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


def check_report_target(path: Path) -> Path | None:
    """Fail now, in one line, when ``eval.json`` could not be written at ``path`` later.

    Creates ``path``'s folder when it is missing (an evaluation writes there anyway) and
    writes and removes a probe file in it: an unwritable place is found before minutes
    of feature extraction, not after. Raises an OSError naming the path. Returns the
    outermost folder this call created (None when the folder existed), so that a run that
    fails later can remove it again.
    """
    path = Path(path)
    folder = path.parent
    advice = "choose a writable --output (a folder, or a .json file path)"
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the report {path}: it is a folder; {advice}")
    blocker = _existing_ancestor(folder)
    if blocker.exists() and not blocker.is_dir():
        raise NotADirectoryError(f"cannot write the report {path}: {blocker} is a file, "
                                 f"not a folder; {advice}")
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    ensure_writable_folder(folder, f"the report {path}", advice)
    return missing[-1] if missing else None


def versions() -> dict[str, str]:
    """Versions of the software that produced a report."""
    return {"timm_ccrop": __version__, "timm": timm.__version__,
            "torch": torch.__version__, "accelerate": accelerate.__version__,
            "python": platform.python_version()}


def finish_results(report: dict[str, Any], output: Path, skipped: dict[str, int],
                  timings: dict[str, float]) -> dict[str, Any]:
    """Add the closing fields (skipped images, timings, versions, time, output path)."""
    report["skipped_unreadable"] = skipped
    report["timings"] = timings
    report["versions"] = versions()
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["output"] = str(output.resolve())
    return report


def write_results(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON, atomically (a crash leaves the old file).

    Raises :class:`ReportWriteError` (an OSError naming ``path``, carrying ``report``).
    """
    # default=str: paths and other values JSON lacks are written as text
    text = json.dumps(report, indent=2, default=str) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise ReportWriteError(f"cannot write the report {path} ({reason}); its numbers are "
                               "the lines printed above", report) from err


def _format_accuracy(accuracy: dict[str, float] | None) -> str:
    if not accuracy:
        return "n/a"
    return ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items())


def result_lines(report: dict[str, Any]) -> list[str]:
    """The numbers of a report as lines: what was evaluated, kNN, linear probe, skips."""
    fmt = _format_accuracy
    data, backbone = report["data"], report["backbone"]
    lines = [f"backbone {backbone['source']} ({backbone['architecture']}, "
             f"{backbone['num_features']} features, sha256 "
             f"{backbone['sha256'][:12]}) on {data['spec']} "
             f"[{data['train_split']} {data['num_train']} -> {data['test_split']} "
             f"{data['num_test']}" + (f", val {data['num_val']}" if data["num_val"] else "")
             + "]"]
    if "knn" in report:
        knn = report["knn"]
        lines.append(f"kNN (k={knn['k']}, T={knn['temperature']}): test {fmt(knn['test'])}"
                     + (f"; val {fmt(knn['val'])}" if "val" in knn else ""))
    if "linear" in report:
        linear = report["linear"]
        lines.append(f"linear probe ({linear['mode']}, {linear['recipe']['epochs']} epochs, "
                     f"final epoch): test {fmt(linear['test'])}"
                     + (f"; val {fmt(linear['val'])}" if "val" in linear else ""))
    skipped = report["skipped_unreadable"]
    if skipped["train"] or skipped["test"]:
        lines.append(f"skipped unreadable images: train {skipped['train']}, test "
                     f"{skipped['test']}")
    return lines


def written_line(report: dict[str, Any]) -> str:
    """The line saying where the report was written."""
    return f"wrote {Path(report['output']).resolve()}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Human-readable lines of a report: :func:`result_lines` and where it was written."""
    return [*result_lines(report), written_line(report)]
