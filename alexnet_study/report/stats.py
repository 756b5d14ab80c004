"""Statistics of a study's arms: mean and 95% confidence interval over repeats, each arm against the
baseline (Welch's t-test and interval), Holm's adjustment over the study's comparisons, and a verdict."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

LEVEL = 0.95
ALPHA = 1 - LEVEL
BETTER, WORSE, SAME = "better", "worse", "no detectable difference"
NO_VERDICT = "no verdict: needs 2+ runs per arm (repeats=3)"


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation and the 95% CI half-width (t distribution) of some runs."""

    n: int
    mean: float | None
    std: float | None
    ci: float | None  # mean +/- ci; None below two runs

    @property
    def low(self) -> float | None:
        return None if self.mean is None or self.ci is None else self.mean - self.ci

    @property
    def high(self) -> float | None:
        return None if self.mean is None or self.ci is None else self.mean + self.ci


def summarize(values: Sequence[float]) -> Summary:
    """:class:`Summary` of ``values``: std and CI need two values, the mean one."""
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return Summary(1, mean, None, None)
    std = statistics.stdev(values)
    return Summary(n, mean, std, float(scipy_stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n))


@dataclass(frozen=True)
class Comparison:
    """An arm minus the baseline: the difference of means, its 95% CI (Welch), Welch's p-value."""

    difference: float | None
    low: float | None
    high: float | None
    p: float | None


def welch(arm: Sequence[float], baseline: Sequence[float]) -> Comparison:
    """Welch's unequal-variance t-test of ``arm`` against ``baseline`` (two-sided) with the
    Welch-Satterthwaite interval of the difference; p and interval need two runs on each side."""
    if not arm or not baseline:
        return Comparison(None, None, None, None)
    difference = statistics.fmean(arm) - statistics.fmean(baseline)
    if len(arm) < 2 or len(baseline) < 2:
        return Comparison(difference, None, None, None)
    va, vb = statistics.variance(arm) / len(arm), statistics.variance(baseline) / len(baseline)
    if va + vb == 0:
        # No spread at all (e.g. every run at chance): the limit of the test as the spread goes to zero.
        return Comparison(difference, difference, difference, 1.0 if difference == 0 else 0.0)
    test = scipy_stats.ttest_ind(arm, baseline, equal_var=False)
    low, high = test.confidence_interval(LEVEL)
    return Comparison(difference, float(low), float(high), float(test.pvalue))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (family-wise error) of the p-values that are not None."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(comparison: Comparison, p_adjusted: float | None, higher_is_better: bool = True) -> str:
    """``better``/``worse`` than the baseline when the adjusted p is below 0.05, else no detectable
    difference; without a p-value (one run on a side), :data:`NO_VERDICT`."""
    if p_adjusted is None or comparison.difference is None:
        return NO_VERDICT
    if p_adjusted >= ALPHA:
        return SAME
    return BETTER if (comparison.difference > 0) == higher_is_better else WORSE
