"""Write a sweep's report into its dir: report.md, report.html, report.csv (one row per arm),
jobs.csv (one row per job) and the figures."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alexnet_study.analysis.sweep import FILTERS_BY_ARM, filters_by_arm
from alexnet_study.report import plots, stats
from alexnet_study.report.collect import Sweep, collect
from alexnet_study.report.figures import FIGURES, sweep_figures
from alexnet_study.report.results import METRICS, Results, analyse

log = logging.getLogger(__name__)

STUDY_FILE = "optuna_study.yaml"  # written by the Optuna sweeper (alexnet_study/plugins/)
# What an earlier report may have left: today's figures, and the former repeats figure and table.
STALE = (*FIGURES.values(), "repeats.png", "report_mean.csv")


def write_report(sweep_dir: str | Path) -> Sweep:
    """Collect ``sweep_dir`` and write ``report.md``, ``report.html``, ``report.csv`` (arms),
    ``jobs.csv`` (jobs) and the PNG figures. Works on finished, failed and partial sweeps."""
    from alexnet_study.report.html import write_html

    sweep = collect(sweep_dir)
    results = analyse(sweep)
    _write_csv(sweep.path / "report.csv", arm_rows(results))
    _write_csv(sweep.path / "jobs.csv", job_rows(results))
    figures = sweep_figures(sweep, results)
    # Each arm's conv1 filters side by side, when its runs kept checkpoints.
    arm_filters = filters_by_arm([(r.arm.label, [job.path for job in r.arm.done]) for r in results.arms])
    if arm_filters is not None:
        figures[FILTERS_BY_ARM] = arm_filters
    for name in STALE:  # figures and tables an earlier report wrote that this one does not
        if name not in figures:
            (sweep.path / name).unlink(missing_ok=True)
    for name, figure in figures.items():
        plots.save(figure, sweep.path / name)
    (sweep.path / "report.md").write_text(markdown(results, list(figures)))
    write_html(results, {name: (sweep.path / name).read_bytes() for name in figures}, sweep.path / "report.html")
    log.info("sweep report: %s (%d jobs)", sweep.path / "report.md", len(sweep.jobs))
    return sweep


def failures(sweep: Sweep) -> list[str]:
    """``job N: status`` for every job that did not end ``ok``."""
    return [f"job {job.name}: {job.status}" for job in sweep.jobs if job.status != "ok"]


def arm_rows(results: Results) -> list[dict[str, Any]]:
    """report.csv: per arm its label, settings, runs, mean/std/95% CI per metric, the comparison with
    the baseline on the primary metric, the verdict, and the mean test accuracy per class."""
    classes = results.sweep.classes()
    rows = []
    for result in results.arms:
        arm = result.arm
        row: dict[str, Any] = {"arm": arm.label, "baseline": arm.baseline, **arm.settings}
        row.update(runs=len(arm.done), failed=len(arm.jobs) - len(arm.done))
        for key, summary in result.summaries.items():
            row.update({f"{key}_mean": summary.mean, f"{key}_std": summary.std,
                        f"{key}_ci_low": summary.low, f"{key}_ci_high": summary.high})  # fmt: skip
        comparison = result.comparison or stats.Comparison(None, None, None, None)
        row.update({f"diff_{results.metric}": comparison.difference, "diff_ci_low": comparison.low,
                    "diff_ci_high": comparison.high, "p_welch": comparison.p, "p_holm": result.p_holm,
                    "verdict": result.verdict, "learned": result.learned})  # fmt: skip
        row["train_time_s_mean"] = stats.summarize(arm.values("train_time_s")).mean
        for name in classes:
            accs = [job.metrics.get("per_class_acc", {}).get(name) for job in arm.done]
            row[f"acc/{name}"] = stats.summarize([float(a) for a in accs if isinstance(a, int | float)]).mean
        rows.append(row)
    return rows


def job_rows(results: Results) -> list[dict[str, Any]]:
    """jobs.csv: every job with its arm, the seed it ran with, the attempt that ran it, its overrides,
    status and metrics."""
    arm_of = {job.name: result.arm.label for result in results.arms for job in result.arm.jobs}
    rows = []
    for row, job in zip(results.sweep.rows(), results.sweep.jobs, strict=True):
        head = {
            "job": row.pop("job"),
            "arm": arm_of.get(job.name),
            "seed": job.metrics.get("seed"),
            "attempt": job.attempt,
        }
        rows.append({**head, **row})
    return rows


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def number(value: Any, digits: int = 3) -> str:
    """A number for the tables: thousands as integers, else ``digits`` decimals; blank for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}" if digits else f"{value:.4g}"
    return str(value)


def p_value(p: float | None) -> str:
    return "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def interval(summary: stats.Summary) -> str:
    """``mean ± CI half-width`` (the mean alone for one run)."""
    if summary.mean is None:
        return ""
    return f"{summary.mean:.3f}" + (f" ± {summary.ci:.3f}" if summary.ci is not None else "")


def difference(comparison: stats.Comparison | None) -> str:
    if comparison is None or comparison.difference is None:
        return ""
    text = f"{comparison.difference:+.3f}"
    if comparison.low is not None and comparison.high is not None:
        text += f" [{comparison.low:+.3f}, {comparison.high:+.3f}]"
    return text


def arm_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the arms table shared by report.md and report.html."""
    settings = list(dict.fromkeys(name for r in results.arms for name in r.arm.settings))
    metric = METRICS[results.metric]
    header = ["arm", *settings, "runs", "test acc (95% CI)", "best val acc (95% CI)",
              f"Δ {metric} vs baseline [95% CI]", "p (Welch)", "p (Holm)", "verdict"]  # fmt: skip
    rows = []
    for result in results.arms:
        arm = result.arm
        runs = str(len(arm.done)) + (
            f" ({len(arm.jobs) - len(arm.done)} failed)" if len(arm.done) < len(arm.jobs) else ""
        )
        label = arm.label + ("" if result.learned else f" ({plots.NOT_LEARNED})")
        rows.append([
            label, *(arm.settings.get(name, "") for name in settings), runs,
            interval(result.summaries["test_acc"]), interval(result.summaries["best_val_acc"]),
            difference(result.comparison), p_value(result.comparison.p if result.comparison else None),
            p_value(result.p_holm), result.verdict,
        ])  # fmt: skip
    return header, rows


def jobs_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the per-job table: arm, seed, attempt, status and the main numbers."""
    header = ["job", "arm", "seed", "attempt", "status", "best val acc", "test acc", "epochs", "train time (s)"]
    rows = []
    for row in job_rows(results):
        rows.append([
            row["job"], row["arm"] or "", number(row["seed"]), number(row["attempt"]), row["status"],
            number(row["best_val_acc"]), number(row["test_acc"]), number(row["epochs"], 0), number(row["train_time_s"], 1),
        ])  # fmt: skip
    return header, rows


def title(results: Results) -> str:
    study = next((job.setting("task_name") for job in results.sweep.jobs if job.setting("task_name")), None)
    return f"{study or 'Sweep'}: {results.sweep.path.name}"


def recipe(results: Results) -> str:
    """The baseline's training recipe in words, from its first job's config (what it records)."""
    baseline = results.design.baseline
    job = baseline.jobs[0] if baseline is not None and baseline.jobs else None
    if job is None:
        return "not recorded (no job)"
    optimizer = ", ".join(
        f"{name} {number(job.setting(key), 0)}"
        for name, key in (("lr", "optim.lr"), ("momentum", "optim.momentum"), ("weight decay", "optim.weight_decay"))
        if job.setting(key) is not None
    )
    parts = [
        ("data", job.setting("data")),
        ("model", job.setting("model.name") or job.setting("model")),
        ("optimizer", f"{job.setting('optim')} ({optimizer})" if job.setting("optim") else None),
        ("schedule", job.setting("sched")),
        ("loss", job.setting("loss")),
        ("batch", job.setting("data.batch_size")),
        ("epochs", job.setting("trainer.max_epochs") or job.setting("epochs")),
    ]
    return (
        ", ".join(f"{name} {value}" for name, value in parts if value is not None) or "not recorded in the jobs' config"
    )


def _count(n: int, noun: str) -> str:
    """``1 arm``, ``3 arms``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(results: Results) -> str:
    """The paragraph at the top: the question, the recipe, the runs and the verdicts in words."""
    question = results.design.question or "not declared (an experiment states it as report.question)"
    baseline = results.design.baseline
    jobs = results.sweep.jobs
    seeds = sorted({job.metrics.get("seed") for job in jobs if isinstance(job.metrics.get("seed"), int)})
    text = [f"**Question:** {question} **Recipe:** {recipe(results)}."]
    text.append(
        f"**Runs:** {_count(len(results.arms), 'arm')}, {_count(len(jobs), 'job')} ({len(failures(results.sweep))} not ok)"
        + (f", seeds {', '.join(map(str, seeds))}" if seeds else "") + "."
    )  # fmt: skip
    if baseline is not None:
        note = results.design.baseline_note
        text.append(f"**Baseline:** {baseline.label}" + (f" ({note})." if note else "."))
    metric = METRICS[results.metric]
    if (results.sweep.path / STUDY_FILE).is_file():
        text.append("A hyperparameter search: every trial is an arm of its own (see the Optuna study).")
    elif len(results.arms) < 2:
        text.append("One arm: nothing to compare.")
    elif not results.comparable:
        text.append(
            f"**No verdict is possible:** an arm has {results.repeats} finished run(s), and the difference between "
            "single runs a few points apart is within seed-to-seed noise. Run every arm several times for a verdict: "
            "add `repeats=3` to the sweep's command (with `hydra.sweep.dir=` this sweep's dir, the runs done are re-used)."
        )
    else:
        verdicts = []
        for result in results.arms[1:]:
            c = result.comparison
            verdicts.append(f"{result.arm.label}: **{result.verdict}** ({difference(c)}, p={p_value(result.p_holm)})")
        text.append(
            f"**Verdicts** ({metric} against the baseline, Welch's t-test, Holm-adjusted over {len(verdicts)} "
            f"comparison(s), 5% level): " + "; ".join(verdicts) + "."
        )
    silent = [r.arm.label for r in results.arms if not r.learned]
    if silent:
        text.append(f"**Did not learn** (accuracy never left chance, {results.chance:.3g}): {'; '.join(silent)}.")
    return " ".join(text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "_no jobs_\n"
    escape = lambda cell: str(cell).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(results: Results, figures: Sequence[str]) -> str:
    sweep = results.sweep
    parts = [f"# {title(results)}\n", summary(results) + "\n", "## Arms\n", _table(*arm_table(results))]
    parts.append(
        "Mean ± half-width of the 95% confidence interval (t distribution) over the arm's finished runs; "
        "the difference to the baseline with Welch's 95% interval; p-values of Welch's t-test, Holm-adjusted "
        "over the study's comparisons. How to read them: docs/reports.md. Per arm in `report.csv`.\n"
    )
    parts += _study_section(sweep.path)
    parts += ["## Figures\n", *[f"![{name}]({name})\n" for name in figures]]
    parts += ["## Jobs\n", _table(*jobs_table(results)),
              f"Every job's numbers: `jobs.csv`. TensorBoard: `tensorboard --logdir {sweep.path}`\n"]  # fmt: skip
    return "\n".join(parts)


def study_summary(sweep_dir: Path) -> str | None:
    """An Optuna search's summary (``optuna_study.yaml``, from ``+hparams_search=optuna``): trial
    counts by state and the best trial; each trial is also a job (job = trial number)."""
    path = sweep_dir / STUDY_FILE
    if not path.is_file():
        return None
    summary = OmegaConf.to_container(OmegaConf.load(path))
    assert isinstance(summary, dict)
    states = Counter(str(trial["state"]).lower() for trial in summary.get("trials") or [])
    text = f"{sum(states.values())} trials: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())) + "."
    best = summary.get("best")
    if best:
        params = ", ".join(f"{key}={number(value, 0)}" for key, value in best["params"].items())
        text += f" Best: trial {best['number']}, {summary.get('direction', 'maximize')}d value {number(best['value'], 0)} ({params})."
    return text + f" Stored in `{sweep_dir / 'optuna.db'}` unless storage was set."


def _study_section(sweep_dir: Path) -> list[str]:
    text = study_summary(sweep_dir)
    return ["## Optuna study\n", text + "\n"] if text else []
