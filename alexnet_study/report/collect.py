"""Read a sweep dir into rows: one per job, with the overrides that vary and the job's metrics."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet_study.report.resume import attempt_of, read_attempts
from alexnet_study.training.records import METRICS_FILE

# (column, metrics.json key) in report order.
COLUMNS = (
    ("best_val_acc", "best_val_acc"),
    ("test_acc", "test_acc"),
    ("test_acc_top5", "test_acc_top5"),
    ("train_loss", "train_loss"),
    ("epochs", "epochs_run"),
    ("train_time_s", "train_time_s"),
    ("images_per_s", "images_per_s"),
    ("params_total", "params_total"),
    ("params_trainable", "params_trainable"),
)
NUMERIC = tuple(column for column, _ in COLUMNS)
# Overrides that make repeats of one arm, not arms: the seed, the sweep's repeat index and count.
REPEAT_KEYS = ("seed", "repeat", "repeats")
# Sweeps over at most this many classes get one test accuracy column per class (``acc/<class>``).
MAX_CLASS_COLUMNS = 10


def history(metrics: dict[str, Any]) -> list[dict[str, float]]:
    """The per-epoch records of a run's :data:`METRICS_FILE` (none when it has none)."""
    return list(metrics.get("history") or [])


@dataclass
class Job:
    """One sweep job: its folder, command-line overrides, metrics (if it wrote any) and status."""

    name: str
    path: Path
    overrides: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    # The sweep launch (1, 2, ...) that produced the metrics; None for sweeps without attempts.json.
    attempt: int | None = None

    @cached_property
    def config(self) -> DictConfig:
        """The job's composed config (``.hydra/config.yaml``; empty when missing)."""
        return _load(self.path / ".hydra" / "config.yaml")

    @cached_property
    def choices(self) -> dict[str, str]:
        """The config group options the job ran with (``optim: adam``), from ``.hydra/hydra.yaml``."""
        choices = OmegaConf.select(_load(self.path / ".hydra" / "hydra.yaml"), "hydra.runtime.choices")
        return {str(k): str(v) for k, v in (choices or {}).items() if v is not None}

    def setting(self, key: str) -> Any:
        """The value of config ``key`` (a group name gives its option), or None when unreadable."""
        if key in self.choices:
            return self.choices[key]
        try:
            value = OmegaConf.select(self.config, key)
        except Exception:  # an interpolation (a resolver) that cannot resolve outside the run
            return None
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    @property
    def status(self) -> str:
        """``ok``, ``diverged``, ``interrupted``, ``running`` or ``failed: <the error's last line>``."""
        if not self.metrics:
            return f"failed: no {METRICS_FILE} (the job did not start or was killed)"
        status = self.metrics.get("status", "failed")
        if status == "failed":
            return f"failed: {self.metrics.get('error') or 'unknown error'}"
        return str(status)

    @property
    def history(self) -> list[dict[str, float]]:
        return history(self.metrics)


@dataclass
class Sweep:
    """All jobs of a sweep dir, and which override keys differ between them."""

    path: Path
    jobs: list[Job]
    varying: list[str]

    def classes(self) -> list[str]:
        """The test set's classes (from ``per_class_acc``) when there are at most :data:`MAX_CLASS_COLUMNS`."""
        names = list(dict.fromkeys(name for job in self.jobs for name in job.metrics.get("per_class_acc") or {}))
        return names if len(names) <= MAX_CLASS_COLUMNS else []

    def numbers(self, job: Job, classes: Sequence[str] | None = None) -> dict[str, float | None]:
        """A job's :data:`COLUMNS`, then its test accuracy per class (``acc/<class>``, for few classes).

        ``classes``: :meth:`classes`, when the caller has it already (it reads every job)."""
        numbers = {column: _number(job.metrics.get(key)) for column, key in COLUMNS}
        per_class = job.metrics.get("per_class_acc") or {}
        classes = self.classes() if classes is None else classes
        numbers.update({f"acc/{name}": _number(per_class.get(name)) for name in classes})
        return numbers

    def rows(self) -> list[dict[str, Any]]:
        """One row per job: ``job``, the varying overrides, ``status`` and :meth:`numbers`."""
        classes = self.classes()
        rows = []
        for job in self.jobs:
            row: dict[str, Any] = {"job": job.name}
            row.update({key: job.overrides.get(key) for key in self.varying})
            row["status"] = job.status
            row.update(self.numbers(job, classes))
            rows.append(row)
        return rows

    def settings(self) -> list[str]:
        """The varying keys that are not repeats (seed)."""
        return [key for key in self.varying if key not in REPEAT_KEYS]

    def has_repeats(self) -> bool:
        return any(key in self.varying for key in REPEAT_KEYS)

    def repeat_rows(self) -> list[dict[str, Any]]:
        """Mean and sample standard deviation of each column over the repeats (seeds) of each
        setting, over the jobs that finished (``ok``); ``runs`` counts them, ``failed`` the rest."""
        settings, classes = self.settings(), self.classes()
        groups: dict[tuple[str | None, ...], list[Job]] = {}
        for job in self.jobs:
            groups.setdefault(tuple(job.overrides.get(k) for k in settings), []).append(job)
        rows = []
        for values, jobs in groups.items():
            done = [job for job in jobs if job.status == "ok"]
            row: dict[str, Any] = dict(zip(settings, values, strict=True))
            row["runs"] = len(done)
            row["failed"] = len(jobs) - len(done)
            per_job = [self.numbers(job, classes) for job in done]
            for column in [*NUMERIC, *(f"acc/{name}" for name in classes)]:
                numbers = [n for n in (job_numbers[column] for job_numbers in per_job) if n is not None]
                row[f"{column}_mean"] = statistics.fmean(numbers) if numbers else None
                row[f"{column}_std"] = statistics.stdev(numbers) if len(numbers) > 1 else (0.0 if numbers else None)
            rows.append(row)
        return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _load(path: Path) -> DictConfig:
    loaded = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    return loaded if isinstance(loaded, DictConfig) else OmegaConf.create()


def _overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    result = {}
    for item in OmegaConf.load(path):
        key, _, value = str(item).partition("=")
        result[key.lstrip("+~")] = value
    return result


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders: any sub-folder with Hydra's record or a metrics file, in job-number order."""
    found = [d for d in sweep_dir.iterdir() if d.is_dir() and ((d / ".hydra").is_dir() or (d / METRICS_FILE).is_file())]
    return sorted(found, key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, d.name))


def collect(sweep_dir: str | Path) -> Sweep:
    """Read every job of ``sweep_dir`` (finished, failed or still missing its metrics)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep directory")
    jobs, attempts = [], read_attempts(sweep_dir)
    for job_dir in _job_dirs(sweep_dir):
        metrics_file = job_dir / METRICS_FILE
        try:
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        except json.JSONDecodeError:
            metrics = {"status": "failed", "error": f"unreadable {METRICS_FILE}"}
        jobs.append(Job(job_dir.name, job_dir, _overrides(job_dir), metrics, attempt_of(attempts, metrics)))
    keys = sorted({key for job in jobs for key in job.overrides})
    varying = [key for key in keys if len({job.overrides.get(key) for job in jobs}) > 1]
    return Sweep(sweep_dir, jobs, varying)
