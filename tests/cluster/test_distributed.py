"""DDP (``trainer=ddp``): a real 2-process run on the CPU (gloo) against one process over the same data,
the combinations of DDP and sweeps that are refused, and the divergence guard's verdict across processes."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from alexnet_study.__main__ import main as entry_point
from alexnet_study.cluster import distributed
from alexnet_study.cluster.distributed import parallel_job_devices
from alexnet_study.config.cli import check_command_line
from alexnet_study.errors import ConfigError, DivergenceError
from alexnet_study.training.callbacks.divergence import DivergenceGuard
from alexnet_study.training.run import build_module

from ..conftest import TINY, run_cli

# 81 validation and test images: a sampler that pads 2 processes to equal shares would count one twice.
DDP_DATA = [o for o in TINY if o not in ("trainer=cpu", "analysis=none")] + [
    "data.val_size=81",
    "data.test_size=81",
    "~callbacks.dataset_views",
    "analysis.cam_images=2",
    "analysis.activation_images=1",
]
# fp32 as the one-process reference below: the CPU's default precision depends on its bf16 instructions.
TWO_CPU_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``python -m alexnet_study trainer=ddp trainer.devices=2`` on the CPU: Lightning starts the second
    process by running the command line again."""
    cwd = tmp_path_factory.mktemp("ddp")
    run_dir = cwd / "run"
    result = run_cli(*DDP_DATA, *TWO_CPU_PROCESSES, f"hydra.run.dir={run_dir}", cwd=cwd, OMP_NUM_THREADS="1")
    return result, run_dir


@pytest.mark.slow
def test_two_processes_reduce_metrics_to_what_one_process_computes(ddp_run, make_cfg) -> None:
    result, run_dir = ddp_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["data"]["splits"] == {"train": 320, "val": 81, "test": 81}

    # One process evaluates the very checkpoint the DDP run tested, over the same splits.
    cfg = make_cfg(*DDP_DATA, "trainer=cpu")
    module, datamodule = build_module(cfg), instantiate(cfg.data)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(
        module, datamodule=datamodule, ckpt_path=metrics["tested_checkpoint"], weights_only=True, verbose=False
    )
    single = {name: float(value) for name, value in trainer.callback_metrics.items()}
    report = module.test_report

    # Accuracies are counts over the same 81 images: equal exactly, not approximately.
    assert metrics["test_acc"] == single["test/acc"]
    assert metrics["test_acc_top5"] == single["test/acc_top5"]
    assert metrics["per_class_acc"] == dict(zip(datamodule.classes, report["per_class_acc"], strict=True))
    rows = (run_dir / "confusion_matrix.csv").read_text().splitlines()[1:]
    confusion = [[int(cell) for cell in row.split(",")[1:]] for row in rows]
    assert confusion == report["confusion_matrix"]
    assert sum(map(sum, confusion)) == 81  # every test image counted once
    assert metrics["test_loss"] == pytest.approx(single["test/loss"], rel=1e-5)  # float sums in another order

    # Validation was reduced the same way: the best epoch's val/acc is the checkpoint's, over all 81 images.
    trainer.validate(
        module, datamodule=datamodule, ckpt_path=metrics["tested_checkpoint"], weights_only=True, verbose=False
    )
    assert metrics["best_val_acc"] == float(trainer.callback_metrics["val/acc"])


@pytest.mark.slow
def test_each_process_trains_on_its_share_and_rank_zero_alone_writes(ddp_run) -> None:
    result, run_dir = ddp_run
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Each process trained on 160 of the 320 images per epoch; the record counts them all, once.
    assert [record["images"] for record in metrics["history"]] == [320.0, 320.0]
    assert metrics["images_seen"] == 640.0
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert len(provenance["attempts"]) == 1 and provenance["attempts"][0]["status"] == "ok"
    assert not any("train_ddp_process" in part for part in provenance["command"])  # rank zero's command line
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["run"]  # no other run dir
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    # The analysis views are drawn once, by rank zero, from every process's share of the test images.
    assert "analysis views of 81 test images" in next(run_dir.glob("*.log")).read_text()
    # No "sync_dist=True" warnings: every epoch-level value is reduced across the processes.
    assert "sync_dist" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trainer=ddp", "trainer.devices=2", "-m"], "would start the whole sweep again"),
        (["trainer=ddp", "-m"], "an unknown number of processes"),
        (["trainer.devices=2", "hydra/launcher=parallel", "-m"], "would start the whole sweep again"),
        (["trainer=ddp", "trainer.devices=2", "hydra/launcher=submitit_local", "-m"], "whole sweep again"),
        (["trainer.strategy=ddp_spawn"], "trainer.strategy=ddp_spawn: not supported"),
        (["trainer=ddp", "trainer.devices=2", "trainer.num_nodes=2"], "hydra.run.dir=/shared/path"),
        (["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.tasks_per_node=1", "-m"],
         "one task per device"),
        (["hydra/launcher=slurm", "trainer=ddp", "-m"], "give a number of devices per node"),
    ],
)  # fmt: skip
def test_launches_that_cannot_work_are_refused_in_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        check_command_line(argv)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["trainer=ddp", "trainer.devices=2"],  # one run: Lightning starts the second process
        ["trainer=ddp", "trainer.devices=2", "trainer.num_nodes=2", "hydra.run.dir=/shared/run"],
        ["trainer=ddp", "trainer.devices=1", "-m"],  # one process per job
        ["hydra/launcher=parallel", "optim.lr=0.1,0.01", "-m"],
        ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2", "-m"],
    ],
)
def test_supported_launches_pass_the_check(argv: list[str]) -> None:
    check_command_line(argv)


def test_the_entry_point_refuses_ddp_under_m_with_exit_status_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["alexnet_study", "trainer=ddp", "trainer.devices=2", "optim.lr=0.1,0.01", "-m"])
    with pytest.raises(SystemExit) as caught:
        entry_point()
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[alexnet_study][ERROR] - trainer.devices=2")


class Reduction:
    """A stand-in for a DDP strategy's boolean all-reduce: another process reports ``elsewhere``."""

    def __init__(self, elsewhere: bool) -> None:
        self.elsewhere, self.calls = elsewhere, []

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        assert all is False  # "any process"
        self.calls.append(decision)
        return decision or self.elsewhere


def fake_trainer(world_size: int, elsewhere: bool) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world_size, strategy=Reduction(elsewhere), optimizers=[], current_epoch=1, global_step=7
    )


@pytest.mark.parametrize(
    ("losses", "world_size", "elsewhere", "reduced", "message"),
    [
        ([1.0, 2.0], 2, True, [False], "another process"),  # finite here, NaN on the other process
        ([1.0, float("nan")], 2, False, [True], "became nan"),  # NaN here: the others learn it too
        ([1.0, 2.0], 2, False, [False], None),
        ([1.0, 2.0], 1, True, [], None),  # one process: nothing to reduce
    ],
)
def test_divergence_verdict_is_reduced_over_all_processes(losses, world_size, elsewhere, reduced, message) -> None:
    guard, trainer = DivergenceGuard(check_every_n_steps=2), fake_trainer(world_size, elsewhere)
    guard.on_train_batch_end(trainer, None, torch.tensor(losses[0]), None, 0)
    if message is None:
        guard.on_train_batch_end(trainer, None, torch.tensor(losses[1]), None, 1)
    else:
        with pytest.raises(DivergenceError, match=message):
            guard.on_train_batch_end(trainer, None, torch.tensor(losses[1]), None, 1)
    assert trainer.strategy.calls == reduced  # every process takes part in the reduction, NaN or not


JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def hold(lock: Path) -> int:
    """What another worker process of the sweep does to hold a GPU (flock: per open file, so it works here)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_parallel_jobs_each_get_a_gpu_of_their_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(distributed, "_held", {})
    other = hold(tmp_path / ".devices" / "0.lock")
    try:
        one_gpu = {"devices": 1}
        assert parallel_job_devices(one_gpu, JOBLIB, tmp_path, gpus=4) == [1]
        assert parallel_job_devices(one_gpu, JOBLIB, tmp_path, gpus=4) == [1]  # this worker's next job: the same
        assert (
            parallel_job_devices(one_gpu, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", tmp_path, 4)
            is None
        )
        assert parallel_job_devices({"devices": 2}, JOBLIB, tmp_path, gpus=4) is None  # its own choice
        assert parallel_job_devices(one_gpu, JOBLIB, tmp_path, gpus=1) is None
        taken = [hold(tmp_path / "full" / f"{device}.lock") for device in range(2)]
        assert distributed.claim_device(tmp_path / "full", 2) is None  # more jobs than GPUs: they share
        for fd in taken:
            os.close(fd)
    finally:
        os.close(other)


@pytest.mark.parametrize(("launcher", "target"), [("parallel", "JOBLIB_LAUNCHER"), ("slurm", "SLURM_LAUNCHER")])
def test_launcher_presets_name_the_targets_the_launch_checks_compare(make_cfg, launcher: str, target: str) -> None:
    assert make_cfg(f"hydra/launcher={launcher}").hydra.launcher._target_ == getattr(distributed, target)
