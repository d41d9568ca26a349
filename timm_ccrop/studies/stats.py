"""The statistics of a paired-seed comparison: paired differences, Student-t intervals
(``scipy.stats.t``) and the share of the oracle's gain with a paired bootstrap interval
(``scipy.stats.bootstrap``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "bootstrap_share", "deltas_by_seed",
           "finite", "format_interval", "mean_or_nan", "mean_std", "paired_differences",
           "std_or_zero", "t_interval"]

BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 0


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers (None and NaN dropped)."""
    return [v for v in values if v is not None and not math.isnan(v)]


def mean_or_nan(values: Sequence[float | None]) -> float:
    """Mean of the finite values, NaN for none."""
    values = finite(values)
    return statistics.mean(values) if values else float("nan")


def std_or_zero(values: Sequence[float | None]) -> float:
    """Sample standard deviation of the finite values, 0 for fewer than two."""
    values = finite(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std(values: Sequence[float | None], signed: bool = False) -> str:
    """``mean ± std`` (sample std) of the finite values, ``(n=1)`` for one, ``n/a`` for none."""
    values = finite(values)
    number = "{:+.2f}" if signed else "{:.2f}"
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{number.format(values[0])} (n=1)"
    return f"{number.format(statistics.mean(values))} ± {statistics.stdev(values):.2f}"


def paired_differences(cells: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]]
                       ) -> dict[str, list[float]]:
    """Per-seed accuracy differences ``cell - baseline`` for the seeds both have."""
    by_seed = {c["seed"]: c for c in baseline}
    pairs = [(c, by_seed[c["seed"]]) for c in cells if c["seed"] in by_seed]
    return {key: [c[key] - b[key] for c, b in pairs] for key in ("knn", "linear")}


def deltas_by_seed(cells: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]],
                   key: str) -> dict[int, float]:
    """seed -> ``cell[key] - baseline[key]`` for the seeds both have."""
    by_seed = {c["seed"]: c for c in baseline}
    return {c["seed"]: c[key] - by_seed[c["seed"]][key] for c in cells if c["seed"] in by_seed}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """``level`` confidence interval of the mean (Student t with n - 1 degrees of freedom,
    ``scipy.stats.t.ppf``), or None for fewer than two finite values."""
    values = finite(values)
    if len(values) < 2:
        return None
    mean = statistics.mean(values)
    quantile = float(stats.t.ppf(0.5 + level / 2, len(values) - 1))
    half = quantile * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def format_interval(interval: tuple[float, float] | None, signed: bool = True) -> str:
    """``[low, high]`` with two decimals (signed by default), ``n/a`` for None."""
    if interval is None:
        return "n/a"
    number = "{:+.2f}" if signed else "{:.2f}"
    return f"[{number.format(interval[0])}, {number.format(interval[1])}]"


def _ratio_of_means(arm: np.ndarray, oracle: np.ndarray, axis: int = -1) -> np.ndarray:
    """mean(arm) / mean(oracle) along ``axis``; NaN where the oracle gains nothing."""
    denominator = np.sum(oracle, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0.0, np.sum(arm, axis=axis) / denominator, np.nan)


def bootstrap_share(arm: Sequence[float], oracle: Sequence[float],
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                    level: float = 0.95) -> tuple[float, float, float] | None:
    """Share of the oracle's gain an arm captures, with a paired-bootstrap interval.

    ``arm[i]`` and ``oracle[i]`` are the paired differences from rcrop of the same seed.
    Returns ``(mean(arm) / mean(oracle), low, high)``: the interval is the percentile
    interval of the ratio over ``resamples`` paired resamplings of the seeds
    (``scipy.stats.bootstrap(paired=True)``, seeded, so reproducible); a resample whose
    oracle gain sums to 0 has no share and is left out. None when the share is not
    meaningful: fewer than two seeds, or the oracle's own gain is not resolved (its
    Student-t ``level`` interval includes 0).
    """
    if len(arm) != len(oracle):
        raise ValueError(f"arm and oracle need one value per seed each, got {len(arm)} "
                         f"and {len(oracle)}")
    interval = t_interval(oracle, level)
    if interval is None or interval[0] <= 0.0 <= interval[1]:
        return None
    share = statistics.mean(arm) / statistics.mean(oracle)
    result = stats.bootstrap((np.asarray(arm, float), np.asarray(oracle, float)),
                             _ratio_of_means, paired=True, vectorized=True,
                             n_resamples=resamples, method="percentile", confidence_level=level,
                             random_state=np.random.default_rng(seed))
    ratios = result.bootstrap_distribution[~np.isnan(result.bootstrap_distribution)]
    if len(ratios) < 2:
        return None
    tail = 100 * (1.0 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return share, float(low), float(high)
