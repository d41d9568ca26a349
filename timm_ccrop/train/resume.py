"""What a resume may change: a checkpoint is continued only with the settings it was
trained with.

A run's meaning is its data, model, method, views, crop schedule, optimisation and seed:
the weights, the optimizer state, the box table and the data order of its first epochs
came from them. A resume that changes one of them would continue another run than the
one ``config.yaml`` then records, so it is refused, naming every changed value. Settings
of the execution and the reports (workers, checkpoint cadence, kNN monitor, pictures,
trackers, progress bars, compile, memory format) may change: the views do not depend on
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..runs import read_checkpoint

__all__ = ["EXECUTION_SETTINGS", "check_resume_source", "read_resumable", "setting_changes"]

#: The settings a resume may change (everything else must match the checkpoint's).
EXECUTION_SETTINGS = frozenset({
    "eval_data", "num_workers", "channels_last", "compile", "sync_bn", "output",
    "save_every", "keep_checkpoints", "snapshots", "knn_every", "knn_k", "knn_temperature",
    "knn_max_train", "pictures", "log_with", "progress",
})


def check_resume_source(resume: str | Path | None) -> None:
    """Fail before a run folder is touched when ``--resume`` names nothing."""
    if resume is None or resume == "auto":
        return
    if not Path(resume).exists():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint file or run folder; "
                                "give a checkpoint-epoch*.pt, a run folder, or auto")


def _meaning(values: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide a run's meaning, with defaults resolved (an explicit
    ``--image-size 32`` means the same run as the preset's 32)."""
    try:
        config = TrainConfig.from_dict(values)
    except (ValueError, TypeError):  # a config of another version: compare as written
        return {k: v for k, v in values.items() if k not in EXECUTION_SETTINGS}
    meaning = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_SETTINGS}
    warmup, interval = config.resolved_schedule()
    meaning.update(image_size=config.resolved_image_size(), alpha=config.resolved_alpha(),
                   localizer_kwargs=config.resolved_localizer_kwargs(),
                   box_warmup_epochs=warmup, loc_interval=interval,
                   box_momentum=config.resolved_box_momentum())
    return meaning


def setting_changes(saved: dict[str, Any], config: TrainConfig) -> list[tuple[str, Any, Any]]:
    """``(key, the checkpoint's value, this run's value)`` of every setting of the run's
    meaning that differs; keys the checkpoint does not record are not compared."""
    before, now = _meaning(saved), _meaning(config.to_dict())
    return [(key, before[key], now[key]) for key in now
            if key in before and key in saved and before[key] != now[key]]


def read_resumable(config: TrainConfig, resume: Path) -> tuple[dict[str, Any], Path]:
    """The checkpoint to resume from (verified), checked against ``config`` before
    anything is built: one ValueError naming every changed setting."""
    state, source = read_checkpoint(resume)
    changes = setting_changes(state.get("config") or {}, config)
    if changes:
        was = ", ".join(f"{key}={old!r}" for key, old, _ in changes)
        asks = ", ".join(f"{key}={new!r}" for key, _, new in changes)
        raise ValueError(
            f"checkpoint {source} was trained with {was}; this run asks for {asks}. A "
            "resume continues the same run: resume with the same settings, or start a new "
            "--output")
    return state, source
