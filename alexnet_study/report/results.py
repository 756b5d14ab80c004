"""A study's results: per arm, n, mean and 95% CI of best val and test accuracy; against the
baseline, the difference (Welch), its p-value, Holm's adjustment and a verdict; whether it learned."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from alexnet_study.report import stats
from alexnet_study.report.arms import Arm, Design, design
from alexnet_study.report.collect import Sweep

METRICS = {"test_acc": "test accuracy", "best_val_acc": "best val accuracy"}


@dataclass
class ArmResult:
    arm: Arm
    summaries: dict[str, stats.Summary]  # by metrics key (METRICS)
    comparison: stats.Comparison | None  # against the baseline, on the primary metric; None for the baseline
    p_holm: float | None
    verdict: str
    learned: bool


@dataclass
class Results:
    """Everything the report says about a study."""

    sweep: Sweep
    design: Design
    arms: list[ArmResult]
    metric: str  # the primary metric: test_acc when every finished run has it, else best_val_acc
    chance: float | None

    @property
    def repeats(self) -> int:
        """The smallest number of finished runs of an arm that recorded the primary metric."""
        return min((len(r.arm.values(self.metric)) for r in self.arms), default=0)

    @property
    def comparable(self) -> bool:
        """Whether verdicts are possible: two or more finished runs in every arm, and two arms."""
        return len(self.arms) > 1 and self.repeats >= 2

    def best(self) -> ArmResult | None:
        """The arm with the highest mean of the primary metric."""
        scored = [r for r in self.arms if r.summaries[self.metric].mean is not None]
        return max(scored, key=lambda r: r.summaries[self.metric].mean or 0.0, default=None)


def analyse(sweep: Sweep) -> Results:
    """Group ``sweep`` into arms and compare each with the baseline on the primary metric."""
    plan = design(sweep)
    done = [job for arm in plan.arms for job in arm.done]
    metric = "test_acc" if done and all(_finite(job.metrics.get("test_acc")) for job in done) else "best_val_acc"
    chance = _chance(sweep)
    baseline = plan.baseline
    comparisons = [
        None if arm is baseline or baseline is None else stats.welch(arm.values(metric), baseline.values(metric))
        for arm in plan.arms
    ]
    adjusted = stats.holm([c.p if c is not None else None for c in comparisons])
    results = []
    for arm, comparison, p_holm in zip(plan.arms, comparisons, adjusted, strict=True):
        summaries = {key: stats.summarize(arm.values(key)) for key in METRICS}
        verdict = "baseline" if comparison is None else stats.verdict(comparison, p_holm)
        results.append(ArmResult(arm, summaries, comparison, p_holm, verdict, _learned(arm, chance)))
    return Results(sweep, plan, results, metric, chance)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _chance(sweep: Sweep) -> float | None:
    """1 / the number of classes (from a job's metrics or config)."""
    for job in sweep.jobs:
        classes = (job.metrics.get("data") or {}).get("num_classes") or job.setting("data.num_classes")
        if isinstance(classes, int) and classes > 1:
            return 1.0 / classes
    return None


def _learned(arm: Arm, chance: float | None) -> bool:
    """False when no finished run's best val accuracy left chance: it stayed within three binomial
    standard errors of 1/classes on the validation split (half of chance above it when its size is unknown)."""
    if chance is None or not arm.done:
        return True
    for job in arm.done:
        best = job.metrics.get("best_val_acc")
        size = ((job.metrics.get("data") or {}).get("splits") or {}).get("val")
        margin = 3 * math.sqrt(chance * (1 - chance) / size) if isinstance(size, int) and size > 0 else chance / 2
        if _finite(best) and best > chance + margin:
            return True
    return False
