"""``python -m alexnet_study [OVERRIDES] [-m]``: one training run, or a sweep with ``-m``."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from alexnet_study.config import config_dir
from alexnet_study.errors import StudyError

log = logging.getLogger("alexnet_study")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train as configured; return ``val/acc_best`` (what sweepers optimize)."""
    from alexnet_study.train import run  # after Hydra has parsed the command line: --help stays fast

    _route_lightning_logs_through_hydra()
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = run(cfg)
    except StudyError as err:
        log.error("%s", err)
        if in_sweep:
            return None  # recorded in the job's metrics.json; the sweep goes on (see below)
        sys.exit(2)
    except Exception:
        if not in_sweep:
            raise
        # One job's crash must not cost the others: its metrics.json says "failed" with the
        # error, the sweep goes on, and the report callback exits non-zero at the end.
        log.exception("sweep job %s failed", HydraConfig.get().job.num)
        return None
    return metrics.get("best_val_acc")


def _route_lightning_logs_through_hydra() -> None:
    """Lightning adds its own console handler when imported before logging is set up; drop it so
    its messages appear once, in Hydra's format, on the console and in the run's log file."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


if __name__ == "__main__":
    main()
