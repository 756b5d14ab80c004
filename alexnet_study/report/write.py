"""Write a sweep's report into its dir: report.csv, report.md and the figures."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from omegaconf import OmegaConf

from alexnet_study.report import plots
from alexnet_study.report.collect import Sweep, collect

log = logging.getLogger(__name__)

STUDY_FILE = "optuna_study.yaml"  # written by the Optuna sweeper (alexnet_study/plugins/)
FIGURES = {
    "curves": "curves.png",
    "bars": "bars.png",
    "heatmap": "heatmap.png",
    "repeats": "repeats.png",
}


def write_report(sweep_dir: str | Path) -> Sweep:
    """Collect ``sweep_dir`` and write ``report.csv``, ``report.md`` (and ``report_mean.csv``
    with repeats) plus the PNG figures. Works on finished, failed and partial sweeps."""
    sweep = collect(sweep_dir)
    rows = sweep.rows()
    _write_csv(sweep.path / "report.csv", rows)
    means = sweep.repeat_rows() if _uses_means(sweep) else []
    repeat_rows = means if sweep.has_repeats() else []
    if repeat_rows:
        _write_csv(sweep.path / "report_mean.csv", repeat_rows)
    figures = _write_figures(sweep, rows, means)
    (sweep.path / "report.md").write_text(_markdown(sweep, rows, repeat_rows, figures))
    log.info("sweep report: %s (%d jobs)", sweep.path / "report.md", len(rows))
    return sweep


def failures(sweep: Sweep) -> list[str]:
    """``job N: status`` for every job that did not end ``ok``."""
    return [f"job {job.name}: {job.status}" for job in sweep.jobs if job.status != "ok"]


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "_no jobs_\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _markdown(sweep: Sweep, rows: list[dict[str, Any]], repeat_rows: list[dict[str, Any]], figures: list[str]) -> str:
    ok = sum(row["status"] == "ok" for row in rows)
    parts = [
        f"# Sweep report: {sweep.path.name}\n",
        f"{len(rows)} jobs, {ok} ok. Varying: {', '.join(sweep.varying) or 'nothing'}. "
        f"TensorBoard: `tensorboard --logdir {sweep.path}`\n",
        "## Jobs\n",
        _table(rows),
    ]
    if repeat_rows:
        parts += ["## Mean and standard deviation over repeats (seeds)\n", _table(repeat_rows)]
    parts += _study_section(sweep.path)
    parts += [f"![{name}]({name})\n" for name in figures]
    return "\n".join(parts)


def _study_section(sweep_dir: Path) -> list[str]:
    """An Optuna search's summary (``optuna_study.yaml``, from ``+hparams_search=optuna``): trial
    counts by state and the best trial; each trial is also a row of the jobs table (job = trial number)."""
    path = sweep_dir / STUDY_FILE
    if not path.is_file():
        return []
    summary = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(summary, dict)
    states = Counter(str(trial["state"]).lower() for trial in summary.get("trials") or [])
    text = f"{sum(states.values())} trials: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + "."
    best = summary.get("best")
    if best:
        params = ", ".join(f"{key}={_format(value)}" for key, value in best["params"].items())
        text += f" Best: trial {best['number']}, {summary.get('direction', 'maximize')}d value {_format(best['value'])} ({params})."
    return ["## Optuna study\n", text + f" Stored in `{sweep_dir / 'optuna.db'}` unless storage was set.\n"]


def _uses_means(sweep: Sweep) -> bool:
    """Whether the report needs :meth:`Sweep.repeat_rows`: for repeats, or for a 2-D grid's heatmaps."""
    return sweep.has_repeats() or len(sweep.settings()) == 2


def sweep_figures(
    sweep: Sweep, rows: list[dict[str, Any]] | None = None, means: list[dict[str, Any]] | None = None
) -> dict[str, Figure]:
    """The report's figures by file name: training curves of every job, bars of best val acc and
    training time, mean +/- std over repeats, and heatmaps for 2-D grids (what applies).

    ``rows`` and ``means``: ``sweep.rows()`` and ``sweep.repeat_rows()``, when the caller has them."""
    if rows is None:
        rows = sweep.rows()
    if means is None:
        means = sweep.repeat_rows() if _uses_means(sweep) else []
    figures: dict[str, Figure] = {}
    histories = {sweep.label(job): job.history for job in sweep.jobs if job.history}
    if histories:
        figures[FIGURES["curves"]] = plots.training_curves(histories)
    if sweep.jobs:
        labels = [sweep.label(job) for job in sweep.jobs]
        panels = {
            "best val acc": [r["best_val_acc"] for r in rows],
            "training time (s)": [r["train_time_s"] for r in rows],
        }
        figures[FIGURES["bars"]] = plots.bars(labels, panels)
    if sweep.has_repeats():
        labels = [", ".join(f"{k}={row[k]}" for k in sweep.settings()) or "all" for row in means]
        panels = {
            "best val acc": [r["best_val_acc_mean"] for r in means],
            "test acc": [r["test_acc_mean"] for r in means],
        }
        errors = {
            "best val acc": [r["best_val_acc_std"] for r in means],
            "test acc": [r["test_acc_std"] for r in means],
        }
        figures[FIGURES["repeats"]] = plots.bars(labels, panels, errors)
    if len(sweep.settings()) == 2:
        figures[FIGURES["heatmap"]] = _grid_figure(means, *sweep.settings())
    return figures


def _write_figures(sweep: Sweep, rows: list[dict[str, Any]], means: list[dict[str, Any]]) -> list[str]:
    figures = sweep_figures(sweep, rows, means)
    for name, figure in figures.items():
        plots.save(figure, sweep.path / name)
    return list(figures)


def _grid_figure(repeat_rows: list[dict[str, Any]], row_key: str, column_key: str) -> Figure:
    """Heatmaps of best val acc and training time over a 2-D grid (mean over repeats)."""
    means = {(r[row_key], r[column_key]): r for r in repeat_rows}
    row_values = _sorted_values(r for r, _ in means)
    column_values = _sorted_values(c for _, c in means)
    panels = {}
    for title, column in (("best val acc", "best_val_acc_mean"), ("training time (s)", "train_time_s_mean")):
        panels[title] = [[means.get((r, c), {}).get(column) for c in column_values] for r in row_values]
    return plots.heatmap(row_values, column_values, panels, row_key, column_key)


def _sorted_values(values: Any) -> list[str]:
    unique = list(dict.fromkeys(values))
    try:
        return sorted(unique, key=float)
    except (TypeError, ValueError):
        return sorted(unique, key=str)
