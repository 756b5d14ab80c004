"""A run dir's record (``metrics.json``, ``provenance.json``, ``.hydra/``) and what a later attempt may do to it.

A run that finished ``ok`` keeps its record: an attempt in the same dir that fails, is refused or
finds nothing left to train writes its own outcome beside it (``failed-<time>.json``,
``interrupted-<time>.json``) and leaves ``metrics.json``, ``provenance.json`` and ``.hydra/`` as
they were. Only an attempt that trains and finishes ``ok`` replaces them.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from alexnet_study.config.validate import validate_config
from alexnet_study.errors import ConfigError

METRICS_FILE = "metrics.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def finished_metrics(output_dir: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of a run that finished ``ok`` in ``output_dir``, else ``None``."""
    try:
        metrics = json.loads((output_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("status") == "ok" else None


def attempt_path(output_dir: Path, status: str) -> Path:
    """Where an attempt that did not replace a finished record writes its own: ``<status>-<UTC time>.json``."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S")
    path = output_dir / f"{status}-{stamp}.json"
    number = 1
    while path.exists():  # two attempts within a second
        number += 1
        path = output_dir / f"{status}-{stamp}-{number}.json"
    return path


def kept_note(output_dir: Path, path: Path) -> str:
    """The words an error line ends with when a finished record was kept."""
    return f"{output_dir} holds a finished run, kept as it was; this attempt's record: {path.name}"


def job_dir(cfg: DictConfig, job_num: int | None) -> Path | None:
    """The directory Hydra will run a job in (``hydra.run.dir``, or ``hydra.sweep.dir``/``subdir``
    for job ``job_num`` of a sweep), as an absolute path; ``None`` if it cannot be known yet."""
    hydra = cfg.get("hydra")
    if hydra is None:
        return None
    try:
        if job_num is None:
            return Path(str(hydra.run.dir)).absolute()
        if hydra.job.get("num") != job_num:  # the command-line pre-check composes each job with its own already
            with open_dict(hydra):
                hydra.job.num = job_num
                hydra.job.id = job_num
        return (Path(str(hydra.sweep.dir)) / str(hydra.sweep.subdir)).absolute()
    except Exception:  # an interpolation only Hydra's launcher can resolve: run() still guards the record
        return None


def refuse_over_finished_run(cfg: DictConfig, job_num: int | None) -> None:
    """Check ``cfg``'s values now, before Hydra starts the job, if its dir holds a finished run.

    Hydra writes ``.hydra/`` (config, overrides) at the very start of a job, before any of this
    package's code runs in it; ``run()`` checks the values only after that. A refused attempt must
    not leave a finished run's ``.hydra/`` describing a config that never ran, so for such a dir
    the values are checked here, and a refusal is written beside the record
    (``failed-<time>.json``) and raised as a :class:`ConfigError` whose line says so. Any other dir
    (a new run, a failed or interrupted one) is left to ``run()``, which records the refusal in its
    ``metrics.json``, and a refused job of a new sweep does not stop the others.
    """
    directory = job_dir(cfg, job_num)
    if directory is None or finished_metrics(directory) is None:
        return
    try:
        validate_config(cfg)
    except ConfigError as err:
        path = attempt_path(directory, "failed")
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}", "refused_at": now(), "command": sys.argv}
        try:
            path.write_text(json.dumps(record, indent=2) + "\n")
        except OSError as write_err:
            path.unlink(missing_ok=True)
            raise ConfigError(f"{err} ({directory} holds a finished run, kept as it was; {write_err})") from None
        raise ConfigError(f"{err} ({kept_note(directory, path)})") from None
