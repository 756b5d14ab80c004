"""Resuming a sweep: every launch of a sweep dir is an attempt; jobs that finished in an earlier
attempt are re-used as they are, and only the missing or failed ones run.

``attempts.json`` in the sweep dir lists the attempts: when each started and which jobs had finished
by then, with the overrides they ran with. :func:`record_attempt` appends one when a multirun starts
(the report callback's ``on_multirun_start``, before Hydra rewrites any job's ``.hydra/``); at job
start, :func:`finished_metrics` returns the recorded metrics of a job that finished ok with the same
overrides (a changed ``repeats`` count aside: raising it re-uses the repeats already run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from alexnet_study.training.callbacks.provenance import now, write_atomically
from alexnet_study.training.records import finished_metrics as finished_run

ATTEMPTS_FILE = "attempts.json"
# Overrides that do not change what a job computes: the number of repeats of the whole sweep.
NEUTRAL = ("repeats=",)


def read_attempts(sweep_dir: Path) -> list[dict[str, Any]]:
    """The sweep's attempts, oldest first (none for a sweep written before attempts were recorded)."""
    try:
        attempts = json.loads((sweep_dir / ATTEMPTS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return attempts if isinstance(attempts, list) else []


def record_attempt(sweep_dir: Path) -> int:
    """Append this launch to ``attempts.json`` with the jobs finished so far; return its number."""
    attempts = read_attempts(sweep_dir)
    finished = {}
    if sweep_dir.is_dir():
        for job_dir in sweep_dir.iterdir():
            overrides = job_dir / ".hydra" / "overrides.yaml"
            if job_dir.name.isdigit() and overrides.is_file() and finished_run(job_dir) is not None:
                finished[job_dir.name] = [str(o) for o in OmegaConf.load(overrides)]
    number = len(attempts) + 1
    attempts.append({"attempt": number, "started_at": now(), "finished_jobs": finished})
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(sweep_dir / ATTEMPTS_FILE, json.dumps(attempts, indent=1) + "\n")
    return number


def finished_metrics(sweep_dir: Path, job_num: int | str, overrides: Sequence[str]) -> dict[str, Any] | None:
    """The metrics of job ``job_num`` if it finished ok in an earlier attempt with these overrides."""
    attempts = read_attempts(sweep_dir)
    if not attempts:
        return None
    recorded = attempts[-1].get("finished_jobs", {}).get(str(job_num))
    if recorded is None or _essential(recorded) != _essential(overrides):
        return None
    return finished_run(sweep_dir / str(job_num))


def attempt_of(attempts: Sequence[dict[str, Any]], metrics: dict[str, Any]) -> int | None:
    """The attempt (of :func:`read_attempts`) that produced ``metrics``: the last one started no later than the run."""
    started = metrics.get("started_at")
    if not attempts or not isinstance(started, str):
        return None
    # ISO 8601 UTC stamps of the same format (provenance.now) compare as text.
    earlier = [a["attempt"] for a in attempts if str(a.get("started_at", "")) <= started]
    return earlier[-1] if earlier else 1


def _essential(overrides: Sequence[str]) -> list[str]:
    return [str(o) for o in overrides if not str(o).startswith(NEUTRAL)]
