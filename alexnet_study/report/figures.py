"""The report's figures: mean curves per arm with a band over repeats, accuracy bars with 95% CI
whiskers and the chance line, heatmaps for 2-D grids, and the best arm's confusion matrix."""

from __future__ import annotations

import csv
from typing import Any

from matplotlib.figure import Figure

from alexnet_study.report import plots
from alexnet_study.report.collect import Job, Sweep
from alexnet_study.report.results import METRICS, Results, analyse

FIGURES = {"curves": "curves.png", "bars": "bars.png", "heatmap": "heatmap.png", "confusion": "confusion.png"}
CONFUSION_FILE = "confusion_matrix.csv"  # written by training.run.run beside metrics.json


def sweep_figures(sweep: Sweep, results: Results | None = None) -> dict[str, Figure]:
    """The report's figures by file name (those that apply to ``sweep``); ``results``: ``analyse(sweep)``."""
    results = results or analyse(sweep)
    figures: dict[str, Figure] = {}
    runs = {r.arm.label: [job.history for job in r.arm.jobs if job.history] for r in results.arms}
    runs = {label: histories for label, histories in runs.items() if histories}
    not_learned = [r.arm.label for r in results.arms if not r.learned]
    if runs:
        figures[FIGURES["curves"]] = plots.arm_curves(runs, results.chance, not_learned)
    if results.arms:
        labels = [r.arm.label + (" (baseline)" if r.arm.baseline else "") for r in results.arms]
        panels = {
            title: ([r.summaries[key].mean for r in results.arms], [r.summaries[key].ci for r in results.arms])
            for key, title in METRICS.items()
            if any(r.summaries[key].mean is not None for r in results.arms)
        }
        notes = {i: plots.NOT_LEARNED for i, r in enumerate(results.arms) if not r.learned}
        if panels:
            figures[FIGURES["bars"]] = plots.accuracy_bars(labels, panels, results.chance, notes)
    settings = sweep.settings()
    if len(settings) == 2 and not any(key.startswith("variant/") for key in settings):
        figures[FIGURES["heatmap"]] = _grid_figure(results, *settings)
    confusion = _confusion_figure(results)
    if confusion is not None:
        figures[FIGURES["confusion"]] = confusion
    return figures


def _grid_figure(results: Results, row_key: str, column_key: str) -> Figure:
    """Heatmaps of the primary metric and training time over a 2-D grid (mean over repeats)."""
    cells = {(r.arm.overrides.get(row_key), r.arm.overrides.get(column_key)): r for r in results.arms}
    row_values = _sorted_values(r for r, _ in cells)
    column_values = _sorted_values(c for _, c in cells)
    panels = {}
    for title, value in (
        (f"{METRICS[results.metric]} (mean)", lambda r: r.summaries[results.metric].mean),
        ("training time (s, mean)", lambda r: _mean(r.arm.values("train_time_s"))),
    ):
        panels[title] = [[value(cells[(r, c)]) if (r, c) in cells else None for c in column_values] for r in row_values]
    return plots.heatmap(row_values, column_values, panels, row_key, column_key)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sorted_values(values: Any) -> list[str]:
    unique = [v for v in dict.fromkeys(values) if v is not None]
    try:
        return sorted(unique, key=float)
    except (TypeError, ValueError):
        return sorted(unique, key=str)


def _confusion_figure(results: Results) -> Figure | None:
    """The best arm's confusion matrix (its run with the highest primary metric), class names on the axes."""
    best = results.best()
    if best is None:
        return None
    runs = sorted(best.arm.done, key=lambda job: job.metrics.get(results.metric) or 0.0, reverse=True)
    for job in runs:
        table = _read_confusion(job)
        if table is not None:
            classes, counts = table
            title = f"best arm: {best.arm.label}\n(job {job.name}, {METRICS[results.metric]} {job.metrics.get(results.metric, 0):.3f})"
            return plots.confusion_matrix(counts, classes, title)
    return None


def _read_confusion(job: Job) -> tuple[list[str], list[list[float]]] | None:
    path = job.path / CONFUSION_FILE
    if not path.is_file():
        return None
    with path.open() as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        return None
    classes = rows[0][1:]
    counts = [[float(v) for v in row[1:]] for row in rows[1:]]
    return classes, counts
