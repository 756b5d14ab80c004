"""Preemption and time limits of sweep jobs run by submitit (``hydra/launcher=slurm``).

Who requeues: submitit. SLURM signals a job ahead of its time limit (``--signal=USR2@signal_delay_s``,
and on preemption where the cluster sends it); submitit's handler then pickles the job again (Hydra's
launcher: the same sweep config, the same job number, so the same job dir) and requeues it, and the
requeued job continues from ``<job dir>/checkpoints/last.ckpt`` (``resume=auto``). Lightning's own
SLURM auto-requeue is switched off (:func:`slurm_environment`), so the two never both requeue.

What this module adds: submitit's handler would requeue and exit at once, mid-batch, losing the epoch
so far. :class:`SubmititRequeue` turns the signal into Lightning's graceful stop instead (the end of
the current batch, ``last.ckpt`` saved as on SIGTERM); the entry point then hands the signal on to
submitit's handler (:func:`hand_on`).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)

Handler = Callable[[int, FrameType | None], Any]
# (submitit's handler, the signal) once the signal has stopped training; handed on by hand_on().
_pending: tuple[Handler, int] | None = None


def under_submitit() -> bool:
    """Whether this process runs a submitit job (it sets SUBMITIT_EXECUTOR: slurm, local)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def requeue_signal() -> signal.Signals:
    """The signal submitit requeues on: USR2, or SUBMITIT_PREEMPT_SIGNAL."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def slurm_environment() -> list[SLURMEnvironment]:
    """Lightning's SLURM environment with its auto-requeue off, when running under SLURM (else nothing):
    requeueing is submitit's job (sweeps) or the cluster's (plain ``sbatch``); resuming is ``resume=auto``'s."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


class SubmititRequeue(L.Callback):
    """Under submitit, while training: submitit's requeue signal stops training gracefully (``last.ckpt``
    is saved at the end of the current batch) before submitit requeues the job. Does nothing elsewhere."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._signum: signal.Signals | None = None
        self._handler: Any = None

    # After Lightning has registered its own handlers (it restores the ones it found when it tears down).
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not under_submitit():
            return
        self._trainer, self._signum = trainer, requeue_signal()
        self._handler = signal.getsignal(self._signum)
        signal.signal(self._signum, self._stop_training)

    def _stop_training(self, signum: int, frame: FrameType | None) -> None:
        global _pending
        log.warning(
            "%s: stopping at the end of this batch and saving last.ckpt; then submitit requeues the job",
            signal.Signals(signum).name,
        )
        if callable(self._handler):
            _pending = (self._handler, signum)
        if self._trainer is not None:
            # What Lightning's SIGTERM handler sets; LastCheckpoint saves on the SIGTERMException it leads to.
            self._trainer._signal_connector.received_sigterm = True

    # Submitit's handler is back once training ends: normally (teardown) or not (on_exception, after
    # which Lightning skips the teardown hooks), so outside training the signal requeues at once.
    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._handler if self._handler is not None else signal.SIG_DFL)
            self._signum, self._trainer = None, None


def hand_on() -> None:
    """Call submitit's handler for a requeue signal that stopped training (it requeues and exits)."""
    global _pending
    if _pending is None:
        return
    handler, signum = _pending
    _pending = None
    handler(signum, None)
