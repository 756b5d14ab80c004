"""The package's own Lightning training loop and a whole sweep, timed (both need Hydra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L

from alexnet_study.bench.device import peak_memory_mib, reset_memory
from alexnet_study.bench.timing import Settings, SyncLog

# The folder that holds the alexnet_study package: sweep subprocesses import this copy of it.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


# -- the package's Lightning loop and a sweep (both need Hydra) -----------------------------------
class SyncCounter(L.Callback):
    """Counts implicit host-device syncs in the training steps after the first epoch (CUDA only).

    Each epoch's window runs from the start of its second training batch to the start of its last
    one (``EpochRecorder`` synchronizes on purpose at an epoch's first and last batch), so it
    covers whole steps: data, forward, backward, optimizer, callbacks, logging. The totals of the
    last fit are left in ``SyncCounter.last``.
    """

    last: ClassVar[dict[str, Any] | None] = None

    def __init__(self) -> None:
        self._log: SyncLog | None = None
        self._steps = 0
        self._total = SyncLog()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if pl_module.device.type != "cuda" or trainer.current_epoch < 1:
            return
        last = trainer.num_training_batches - 1
        if batch_idx == 1 and last > 1:
            self._log = SyncLog()
            self._log.start()
        elif batch_idx == last and self._log is not None:
            self._log.stop()
            self._total.syncs += self._log.syncs
            self._total.sites.update(self._log.sites)
            self._steps += last - 1
            self._log = None
            SyncCounter.last = {
                "steps": self._steps,
                "syncs": self._total.syncs,
                "syncs_per_step": self._total.syncs / self._steps,
                "sites": dict(self._total.sites.most_common()),
            }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._log is not None:  # an epoch cut short
            self._log.stop()
            self._log = None


def lightning_run(
    model_name: str, image_size: int, train_flops: float, s: Settings, epochs: int, output_root: Path
) -> dict[str, Any]:
    """The package's own training loop (``training.run.run``: Lightning, callbacks, loggers) on synthetic
    data of ``--dataset-size`` images: the images/s its ``EpochRecorder`` reports after the first epoch."""
    try:
        from alexnet_study.config.compose import compose
        from alexnet_study.training.run import run
    except ImportError as err:
        raise SystemExit(f"--trainer needs hydra-core and omegaconf ({err}); see docs/performance.md") from None
    batch = s.batch_size
    overrides = [
        f"paths.root_dir={output_root}",
        "data=synthetic",
        f"model={model_name}",
        f"model.input_size={image_size}",
        f"data.train_size={s.dataset_size}",
        f"data.val_size={max(batch, s.dataset_size // 10)}",
        "data.test_size=0",
        f"data.batch_size={batch}",
        "test=false",
        f"epochs={epochs}",
        f"compile={str(s.compile).lower()}",
        f"seed={s.seed}",
    ]
    if s.device.type == "cpu":
        overrides.append("trainer=cpu")
    elif s.device.type == "cuda":
        overrides.append("+callbacks.sync_counter._target_=alexnet_study.bench.lightning_loop.SyncCounter")
    SyncCounter.last = None
    reset_memory(s.device)
    cfg = compose(overrides, output_dir=output_root / f"{model_name}_{batch}")
    metrics = run(cfg)
    syncs = SyncCounter.last or {}
    images_per_s = metrics.get("images_per_s_after_first_epoch") or 0.0
    tflops = images_per_s * train_flops / 1e12
    return {
        "model": model_name,
        "pipeline": "lightning",
        "batch_size": batch,
        "image_size": image_size,
        "images_per_s": images_per_s,
        "images_per_s_all_epochs": metrics.get("images_per_s"),
        "epochs": metrics.get("epochs_run"),
        "status": metrics.get("status"),
        "precision": metrics.get("precision"),
        "tflops": tflops,
        "mfu": tflops / s.peak if s.peak else None,
        "peak_memory_mib": peak_memory_mib(s.device),
        "host_syncs_per_step": syncs.get("syncs_per_step"),
        "host_sync_sites": sorted(syncs.get("sites", {})),
        "data": "training.run.run(cfg): data=synthetic (uint8 on the device), the default trainer, callbacks and logger",
        "compiled": s.compile,
        "command": "python -m alexnet_study " + " ".join(o for o in overrides if not o.startswith("+callbacks")),
    }


SWEEP_OVERRIDES = ("data=synthetic", "data.train_size=50000", "data.val_size=5000", "data.test_size=1000", "epochs=3")


def sweep_commands(experiment: str, overrides: Sequence[str]) -> dict[str, list[str]]:
    """The two ways to run a study's sweep: jobs one after another (Hydra's basic launcher) and
    side by side on one GPU (``hydra/launcher=parallel``: joblib, 4 processes)."""
    sequential = [sys.executable, "-m", "alexnet_study", f"+experiment={experiment}", *overrides, "-m"]
    return {"sequential": sequential, "parallel": [*sequential[:-1], "hydra/launcher=parallel", "-m"]}


def time_sweep(experiment: str, overrides: Sequence[str], root: Path) -> dict[str, Any]:
    """Wall time of the sweep run each way (each in its own ``paths.root_dir`` under ``root``)."""
    result: dict[str, Any] = {"experiment": experiment, "overrides": list(overrides)}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")])),
    }
    for mode, command in sweep_commands(experiment, overrides).items():
        mode_root = root / mode
        mode_root.mkdir(parents=True, exist_ok=True)
        command = [*command[:-1], f"paths.root_dir={mode_root}", "-m"]
        print(f"sweep ({mode}): {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        with (mode_root / "sweep.log").open("w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        seconds = time.perf_counter() - start
        jobs = [json.loads(p.read_text()) for p in sorted(mode_root.glob("outputs/*/multiruns/*/*/metrics.json"))]
        result[mode] = {
            "seconds": seconds,
            "returncode": done.returncode,
            "jobs": len(jobs),
            "statuses": [job.get("status") for job in jobs],
            "job_images_per_s": [job.get("images_per_s_after_first_epoch") for job in jobs],
            "command": "python " + " ".join(command[1:]),
            "log": str(mode_root / "sweep.log"),
        }
    if result["sequential"]["seconds"] and result["parallel"]["seconds"]:
        result["speedup"] = result["sequential"]["seconds"] / result["parallel"]["seconds"]
    return result
