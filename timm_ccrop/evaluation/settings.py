"""The settings of an evaluation (the options of ``timm-ccrop eval``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MIN_IMAGE_SIZE

__all__ = ["LINEAR_MODES", "PROTOCOLS", "EvalConfig"]

#: Values of ``--protocol``.
PROTOCOLS = ("knn", "linear", "both")
#: Values of ``--linear-mode``.
LINEAR_MODES = ("fast", "paper")


@dataclass
class EvalConfig:
    """Settings of :func:`~timm_ccrop.evaluation.run_evaluation`.

    ``None`` means: from the probe recipe (``batch_size``, ``epochs``, ``lr``), from the
    model's pretrained_cfg (``image_size``, ``mean``, ``std``), ``train`` and the
    dataset's eval split (``train_split``, ``test_split``), the run's config
    (``data``: its ``eval_data`` or ``data``), next to the backbone (``output``).
    ``probe_recipe='auto'``: ``imagenet`` for inputs of 128 px and more, else ``small``.
    ``knn_temperature`` is ``T`` of the kNN vote weights ``exp(similarity / T)``.
    ``verify_weights``: check the backbone's weights against the sha256 recorded when they
    were written (False for weights edited on purpose).
    """

    backbone: str
    data: str | None = None
    protocol: str = "both"
    output: str | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_size: int | None = None
    num_workers: int = 2
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_mode: str = "fast"
    probe_recipe: str = "auto"
    epochs: int | None = None
    lr: float | None = None
    augment: bool = True
    val_fraction: float = 0.0
    seed: int = 0
    train_split: str | None = None
    test_split: str | None = None
    mixed_precision: str = "no"
    progress: bool = True
    verify_weights: bool = True

    def validate(self) -> None:
        """Raise one ValueError that lists every invalid setting."""
        problems = []
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                            f"{self.protocol!r}")
        if self.linear_mode not in LINEAR_MODES:
            problems.append(f"linear mode must be one of {', '.join(LINEAR_MODES)}, got "
                            f"{self.linear_mode!r}")
        if self.knn_k < 1:
            problems.append(f"knn k must be >= 1, got {self.knn_k}")
        if not self.knn_temperature > 0:
            problems.append(f"knn temperature must be > 0, got {self.knn_temperature}")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            problems.append(f"image_size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                problems.append(f"{name} needs 3 values (R G B), got {list(value)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            problems.append(f"std values must be > 0, got {list(self.std)}")
        if problems:
            raise ValueError("invalid evaluation settings: " + "; ".join(problems))

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols to run: ``'both'`` is ``('knn', 'linear')``."""
        return ("knn", "linear") if self.protocol == "both" else (self.protocol,)
