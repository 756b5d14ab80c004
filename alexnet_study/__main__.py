"""``python -m alexnet_study [OVERRIDES] [-m]``: one training run, or a sweep with ``-m``.

Exit status: 0 done; 2 a mistake the one error line explains (a config value, an override Hydra
cannot compose, a forbidden ``_target_``, a diverged or unreadable run); 143 stopped by SIGTERM
after saving ``last.ckpt``; 1 anything else (Ctrl-C included).
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet_study.config.cli import check_command_line
from alexnet_study.config.presets import config_dir
from alexnet_study.errors import StudyError

log = logging.getLogger("alexnet_study")

EXIT_USER_ERROR = 2
EXIT_SIGTERM = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


def main() -> None:
    """The console entry point: check the command line, then hand it to Hydra."""
    try:
        check_command_line(sys.argv[1:])
    except StudyError as err:
        # Hydra has not set up logging yet: the same one-line format, by hand.
        print(f"[alexnet_study][ERROR] - {err}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    hydra_main()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train as configured; return ``val/acc_best`` (what sweepers optimize)."""
    # Imported after Hydra has parsed the command line: --help stays fast.
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from alexnet_study.cluster import requeue
    from alexnet_study.cluster.distributed import launched_as_rank_zero
    from alexnet_study.training.run import run

    _route_lightning_logs_through_hydra()
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    if in_sweep and (done := _finished_in_an_earlier_attempt()) is not None:
        return done.get("best_val_acc")
    try:
        metrics = run(cfg)
    except StudyError as err:
        log.error("%s", err)
        if in_sweep:
            return None  # recorded in the job's metrics.json; the sweep goes on (see below)
        # Under DDP rank zero reports the error (metrics.json, exit status); a non-zero status from
        # another process would make Lightning's launcher kill rank zero before it has written it.
        sys.exit(EXIT_USER_ERROR if launched_as_rank_zero() else 0)
    except SIGTERMException:
        requeue.hand_on()  # stopped by submitit's requeue signal: submitit requeues this job and exits
        # Lightning's SIGTERMException is a SystemExit with status 0: a preempted job must not look done.
        log.error("stopped by SIGTERM; run the same command again (resume=auto) to continue from last.ckpt")
        sys.exit(EXIT_SIGTERM)
    except Exception:
        if not in_sweep:
            raise
        # One job's crash must not cost the others: its metrics.json says "failed" with the
        # error, the sweep goes on, and the report callback exits non-zero at the end.
        log.exception("sweep job %s failed", HydraConfig.get().job.num)
        return None
    return metrics.get("best_val_acc")


def _finished_in_an_earlier_attempt() -> dict | None:
    """A resumed sweep's job that finished ok before with the same overrides: its recorded metrics."""
    from pathlib import Path

    from alexnet_study.report.resume import finished_metrics

    hydra_cfg = HydraConfig.get()
    metrics = finished_metrics(Path(str(hydra_cfg.sweep.dir)), hydra_cfg.job.num, list(hydra_cfg.overrides.task))
    if metrics is not None:
        log.info("job %s finished ok in an earlier attempt of this sweep: re-used as it is", hydra_cfg.job.num)
    return metrics


def _route_lightning_logs_through_hydra() -> None:
    """Lightning adds its own console handler when imported before logging is set up; drop it so
    its messages appear once, in Hydra's format, on the console and in the run's log file."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


if __name__ == "__main__":
    main()
