"""``timm_ccrop.studies.stats``: paired differences, Student-t intervals and the bootstrap
share of the oracle's gain, checked against scipy's own values and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from timm_ccrop.studies.stats import (
    bootstrap_share,
    deltas_by_seed,
    format_interval,
    mean_std,
    paired_differences,
    t_interval,
)


def test_paired_differences_match_seeds():
    rcrop = [{"seed": 0, "knn": 50.0, "linear": 40.0}, {"seed": 1, "knn": 60.0, "linear": 45.0}]
    ccrop = [{"seed": 1, "knn": 62.0, "linear": 44.0}, {"seed": 0, "knn": 53.0, "linear": 41.0},
             {"seed": 7, "knn": 99.0, "linear": 99.0}]  # seed 7 has no rcrop partner
    deltas = paired_differences(ccrop, rcrop)
    assert deltas == {"knn": [2.0, 3.0], "linear": [-1.0, 1.0]}
    assert deltas_by_seed(ccrop, rcrop, "knn") == {1: 2.0, 0: 3.0}
    assert mean_std(deltas["knn"], signed=True) == "+2.50 ± 0.71"
    assert mean_std([-1.0], signed=True) == "-1.00 (n=1)"
    assert mean_std([float("nan")]) == "n/a"


@pytest.mark.parametrize("values", [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.3, -1.2, 2.5],
                                    [6.9, 4.1, 8.8, 5.0, 7.7, 9.9, 6.1, 3.3, 8.0, 6.8]])
def test_t_interval_is_scipys(values):
    low, high = t_interval(values)
    expected = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                      scale=scipy_stats.sem(values))
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    # the paired t test agrees: the interval excludes 0 exactly when p < 0.05
    p = scipy_stats.ttest_rel(values, [0.0] * len(values)).pvalue
    assert (low > 0 or high < 0) == (p < 0.05)


def test_t_interval_known_values_and_edges():
    # mean 3.5, sd 1.8708, n 6: 3.5 -+ 2.5706 * 1.8708 / sqrt(6) (any statistics table)
    low, high = t_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert low == pytest.approx(1.5367, abs=1e-4) and high == pytest.approx(5.4633, abs=1e-4)
    assert t_interval([2.0, 2.0]) == (2.0, 2.0)
    assert t_interval([1.0]) is None and t_interval([]) is None
    assert t_interval([1.0, float("nan")]) is None
    assert format_interval(None) == "n/a"
    assert format_interval((-1.0, 2.5)) == "[-1.00, +2.50]"


def test_bootstrap_share_of_the_oracle_gain():
    # every seed gains half of the oracle's gain: share 0.5 in every resample
    assert bootstrap_share([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]) == pytest.approx(
        (0.5, 0.5, 0.5))
    # oracle +1 on every seed, arm 0 or 1: share = mean of 4 resampled coin flips, whose
    # 2.5% and 97.5% percentiles are 0 and 1 (P(all four 0) = 1/16 > 2.5%)
    assert bootstrap_share([0.0, 1.0, 0.0, 1.0], [1.0] * 4) == pytest.approx((0.5, 0.0, 1.0))
    arm, oracle = [0.3, 2.0, -0.5, 1.1, 0.8, 1.7], [2.0, 3.1, 1.2, 2.6, 1.9, 4.0]
    assert bootstrap_share(arm, oracle) == bootstrap_share(arm, oracle)  # seeded
    share, low, high = bootstrap_share(arm, oracle)
    assert share == pytest.approx(sum(arm) / sum(oracle)) and low < share < high
    # n/a: the oracle's gain interval includes 0, or a single seed
    assert bootstrap_share([0.0, 1.0, 0.0, 1.0], [1.0, -1.0, 2.0, -2.0]) is None
    assert bootstrap_share([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        bootstrap_share([1.0, 2.0], [1.0])


def test_bootstrap_interval_is_scipys_percentile_interval():
    arm, oracle = [0.3, 2.0, -0.5, 1.1, 0.8, 1.7], [2.0, 3.1, 1.2, 2.6, 1.9, 4.0]
    _, low, high = bootstrap_share(arm, oracle, resamples=2000, seed=3)
    result = scipy_stats.bootstrap(
        (np.array(arm), np.array(oracle)),
        lambda a, o, axis: np.sum(a, axis=axis) / np.sum(o, axis=axis), paired=True,
        vectorized=True, n_resamples=2000, method="percentile",
        random_state=np.random.default_rng(3))
    interval = result.confidence_interval
    assert (low, high) == pytest.approx((interval.low, interval.high))
    assert not math.isnan(low)
