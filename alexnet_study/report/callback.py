"""The Hydra callback that writes the sweep report when a multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from alexnet_study.report.resume import record_attempt
from alexnet_study.report.write import failures, write_report

log = logging.getLogger(__name__)


class SweepFailed(SystemExit):
    """Some jobs of the sweep did not finish ``ok``; the others' results and the report are written.

    A SystemExit (status 1, the message on stderr): Hydra turns a callback's ordinary exception
    into a warning and exits 0, which would hide the failure from scripts and schedulers.
    """


class SweepReport(Callback):
    """At the end of every multirun, write the report into the sweep dir; at its start, record the
    launch as an attempt (``attempts.json``, see :mod:`alexnet_study.report.resume`).

    Failed jobs do not stop a sweep (the entry point records them in their ``metrics.json`` and
    returns), so this callback always runs; then it raises :class:`SweepFailed` (the process exits
    with status 1) when any job failed or diverged (``fail_when="any"``, studies: every job is a
    result), or only when no job finished ok (``"all"``: hyperparameter searches, where trials that
    diverge are expected and recorded as failed trials; they are logged as a warning).
    """

    def __init__(self, fail_when: str = "any") -> None:
        if fail_when not in ("any", "all"):
            raise ValueError(f"hydra.callbacks.sweep_report.fail_when={fail_when!r}: accepted: any, all")
        self.fail_when = fail_when

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Record this launch as an attempt of the sweep dir: a resumed sweep re-uses its finished jobs."""
        number = record_attempt(Path(str(config.hydra.sweep.dir)))
        if number > 1:
            log.info("sweep attempt %d: jobs that finished ok in an earlier attempt are re-used", number)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        sweep = write_report(sweep_dir)
        bad = failures(sweep)
        if not bad:
            return
        shown = "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        message = (
            f"{len(bad)} of {len(sweep.jobs)} sweep jobs did not finish ok ({shown}); report: {sweep_dir / 'report.md'}"
        )
        if self.fail_when == "all" and len(bad) < len(sweep.jobs):
            log.warning("%s", message)
            return
        raise SweepFailed(message)
