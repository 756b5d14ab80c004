"""Runs of several processes (Lightning DDP): which process writes, and which ways of launching them work.

Lightning's ``trainer=ddp`` launcher starts the extra processes of one machine by running the command
line again (``_SubprocessScriptLauncher``, with ``hydra.run.dir`` pinned to the first one's); on
SLURM (``srun``, or ``hydra/launcher=slurm`` with one task per device) and under ``torchrun`` the
cluster starts every process itself. :func:`check_launch` refuses the combinations where that goes
wrong; :func:`launched_as_rank_zero` tells, before any Trainer exists, whether this process is the
one that writes ``provenance.json`` and ``metrics.json``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from alexnet_study.errors import ConfigError

log = logging.getLogger(__name__)

# Global rank, local rank and node rank as Lightning's launcher, torchrun and SLURM set them.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
# Strategies whose processes are started by torch.multiprocessing: the callbacks' state (epoch
# history, the divergence guard's) and the errors' types stay in those processes, and every start
# pickles the whole (device-resident) dataset.
SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp_spawn", "deepspeed_spawn")
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"  # hydra/launcher=parallel
SWEEP_ALTERNATIVES = (
    "sweep with one device per job (trainer.devices=1; hydra/launcher=parallel runs several jobs at once), "
    "on SLURM with hydra/launcher=slurm (SLURM starts one task per device), or run each DDP job without -m"
)


# Devices this process holds, by lock dir: (device index, the open lock file).
_held: dict[Path, tuple[int, int]] = {}


def launched_as_rank_zero() -> bool:
    """Whether whoever started this process made it global rank 0 (or nobody started it as one of several)."""
    for name in RANK_VARIABLES:
        try:
            if int(os.environ.get(name) or 0) != 0:
                return False
        except ValueError:  # not a number: not set by a launcher we know
            continue
    return True


def process_count(trainer: Any) -> int | None:
    """Processes Lightning starts for this trainer config (devices x nodes); ``None`` when the
    device count is only known on the machine that runs it (``devices: auto`` or ``-1``)."""
    devices = trainer.get("devices", "auto")
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if isinstance(devices, list | tuple | ListConfig):
        per_node = len(devices)
    elif isinstance(devices, str) and "," in devices:  # "0,1": device indices
        per_node = len([d for d in devices.split(",") if d.strip()])
    else:
        try:
            per_node = int(devices)
        except (TypeError, ValueError):
            per_node = -1
        if per_node == -1:  # auto / -1: every accelerator of the machine
            return None if str(trainer.get("accelerator", "auto")) != "cpu" else nodes
    return per_node * nodes


def check_launch(trainer: Any, *, multirun: bool, launcher: DictConfig | dict[str, Any] | None = None) -> None:
    """Refuse trainer settings the launch cannot honour, with one line saying what works instead.

    ``multirun``: the command line has ``-m``; ``launcher``: the composed ``hydra.launcher`` node.
    """
    if not isinstance(trainer, DictConfig | dict):
        return
    strategy = str(trainer.get("strategy", "auto"))
    if strategy in SPAWNING:
        raise ConfigError(
            f"trainer.strategy={strategy}: not supported: the spawned processes keep the epoch history and the "
            "divergence guard's state to themselves and copy the whole dataset; use trainer=ddp, which starts one "
            "process per device running the same code"
        )
    processes = process_count(trainer)
    if not multirun or processes == 1:
        return
    target = str((launcher or {}).get("_target_", ""))
    if target == SLURM_LAUNCHER:
        _check_slurm_tasks(trainer, launcher or {})
        return
    count = "an unknown number of" if processes is None else str(processes)
    raise ConfigError(
        f"trainer.devices={trainer.get('devices')} trainer.num_nodes={trainer.get('num_nodes', 1)} with -m "
        f"({count} processes per job): Lightning starts the extra processes by running this command line again, "
        f"which under -m would start the whole sweep again in each of them; {SWEEP_ALTERNATIVES}"
    )


def _check_slurm_tasks(trainer: Any, launcher: Any) -> None:
    """On SLURM, SLURM starts the processes: one task per device on each of the job's nodes."""
    devices, nodes = trainer.get("devices"), int(trainer.get("num_nodes", 1) or 1)
    if not isinstance(devices, int) or isinstance(devices, bool):
        raise ConfigError(
            f"trainer.devices={devices}: on SLURM give a number of devices per node (SLURM starts one task per device)"
        )
    tasks, job_nodes = launcher.get("tasks_per_node"), launcher.get("nodes")
    if tasks != devices or job_nodes != nodes:
        raise ConfigError(
            f"hydra.launcher.tasks_per_node={tasks} hydra.launcher.nodes={job_nodes} with trainer.devices={devices} "
            f"trainer.num_nodes={nodes}: SLURM must start one task per device on every node; leave tasks_per_node "
            "and nodes at their defaults in conf/hydra/launcher/slurm.yaml (${trainer.devices}, ${trainer.num_nodes})"
        )


def claim_device(lock_dir: Path, count: int) -> int | None:
    """The first of ``count`` devices that no other process holds a lock on in ``lock_dir``; this
    process keeps it (and gets it again) until it exits. ``None`` when all are taken."""
    if lock_dir in _held:
        return _held[lock_dir][0]
    lock_dir.mkdir(parents=True, exist_ok=True)
    for device in range(count):
        fd = os.open(lock_dir / f"{device}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held[lock_dir] = (device, fd)
        return device
    return None


def parallel_job_devices(trainer: Any, launcher_target: str, sweep_dir: Path, gpus: int) -> list[int] | None:
    """``hydra/launcher=parallel`` on a machine with several GPUs: each single-GPU job gets a GPU of its
    own (``trainer.devices=[k]``), held by its worker process for the whole sweep, instead of every job
    landing on the first GPU. ``None``: leave ``trainer.devices`` as it is."""
    if launcher_target != JOBLIB_LAUNCHER or gpus < 2 or trainer.get("devices") != 1:
        return None
    device = claim_device(sweep_dir / ".devices", gpus)
    if device is None:  # more jobs at once than GPUs (hydra.launcher.n_jobs): they share
        log.warning("every GPU is taken by another job of this sweep; this job shares GPU 0")
        return None
    log.info("hydra/launcher=parallel: this job runs on GPU %d", device)
    return [device]
