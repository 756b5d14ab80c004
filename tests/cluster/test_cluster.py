"""Sweeps on SLURM (``hydra/launcher=slurm``) without a cluster: the sbatch script the launcher would
submit, Lightning's auto-requeue switched off, and requeue on preemption resuming in the job's own dir
(submitit's local executor runs the real requeue path: signal, checkpoint, requeue, resume)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import submitit
import torch
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_study.cluster import requeue
from alexnet_study.config.validate import check_targets
from alexnet_study.training.callbacks.checkpointing import LAST
from alexnet_study.training.run import build_trainer, run

from ..conftest import REPO_ROOT, TINY, allow_targets, multirun_in_process

SLURM_JOB = [
    "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=90",
    "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
]  # fmt: skip


def usr2_at(step: int, marker: Path) -> list[str]:
    """A test callback that sends this process SIGUSR2 (SLURM's signal via submitit) after ``step``, once."""
    return [
        "+callbacks.usr2._target_=tests.training.test_reliability.SignalOnce",
        f"+callbacks.usr2.step={step}",
        "+callbacks.usr2.signal=SIGUSR2",
        f"+callbacks.usr2.marker={marker}",
    ]


def test_slurm_launcher_submits_one_task_per_device_with_the_requeue_signal(make_cfg, tmp_path, monkeypatch) -> None:
    """The plugin's own launch(), up to the point where submitit would call sbatch."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit checks that srun exists; never run
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{Path(sys.executable).parent}:/usr/bin:/bin")
    submitted: dict[str, Any] = {}

    def capture(executor: Any, fn: Any, *arguments: Any) -> list[Any]:
        submitted["sbatch"] = executor._executor._make_submission_file_text("python -m submitit.core._submit", "0")
        submitted["max_num_timeout"] = executor._executor.max_num_timeout
        submitted["jobs"] = list(zip(*arguments, strict=True))
        done = JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)
        return [SimpleNamespace(results=lambda: [done]) for _ in submitted["jobs"]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    cfg = make_cfg(*SLURM_JOB, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    check_targets(cfg)  # the plugin passes the _target_ allowlist
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)
    returns = launcher.launch([["optim.lr=0.1"], ["optim.lr=0.01"]], initial_job_idx=0)

    assert [r.return_value for r in returns] == [0.5, 0.5]
    lines = set(submitted["sbatch"].splitlines())
    expected = {"--partition=gpu", "--time=90", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                "--cpus-per-task=8", "--signal=USR2@120"}  # fmt: skip
    assert {f"#SBATCH {option}" for option in expected} <= lines
    assert "export SUBMITIT_EXECUTOR=slurm" in lines
    assert submitted["max_num_timeout"] == 20  # requeued after hitting the time limit, up to 20 times
    # Each job: its overrides and its number, hence its own dir <sweep dir>/<number>.
    assert [job[:3] for job in submitted["jobs"]] == [
        (["optim.lr=0.1"], "hydra.sweep.dir", 0),
        (["optim.lr=0.01"], "hydra.sweep.dir", 1),
    ]


def test_lightning_auto_requeue_is_off_under_slurm(make_cfg, monkeypatch) -> None:
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "42", "SLURM_NODELIST": "node1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}  # fmt: skip
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    trainer = build_trainer(make_cfg(tiny=True))
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False


def test_requeue_signal_stops_training_at_a_batch_end_then_submitit_requeues(make_cfg, tmp_path, monkeypatch) -> None:
    """In a submitit job, its USR2 does what SIGTERM does (last.ckpt at the end of the batch), and only
    then reaches submitit's handler, which requeues the job."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    allow_targets(monkeypatch, "tests")
    received: list[int] = []

    def submitit_handler(signum: int, frame: Any) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        cfg = make_cfg(*usr2_at(3, tmp_path / "sent"), tiny=True)
        with pytest.raises(SIGTERMException):
            run(cfg)
        assert received == []  # not yet: training had to stop first
        requeue.hand_on()
        assert received == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler  # put back when training ended
    finally:
        signal.signal(signal.SIGUSR2, previous)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    state = torch.load(tmp_path / "run" / "checkpoints" / LAST, map_location="cpu", weights_only=True)
    assert state["global_step"] == 3  # the batch that was running, and nothing after it


@pytest.mark.slow
def test_a_requeued_sweep_job_resumes_from_its_own_checkpoint(monkeypatch, tmp_path: Path) -> None:
    """hydra/launcher=submitit_local: the job gets USR2 at step 6, saves last.ckpt, is requeued by
    submitit (the pickled launcher: same sweep config, same job number) and resumes in the same dir."""
    allow_targets(monkeypatch, "tests")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the job's process finds tests.training.test_reliability
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    sweep = multirun_in_process(monkeypatch, tmp_path, *TINY, "~callbacks.dataset_views",
                                "hydra/launcher=submitit_local", *usr2_at(6, tmp_path / "sent"))  # fmt: skip
    job = sweep / "0"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [".submitit", "0"]  # no second job dir
    metrics = json.loads((job / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs_run"] == 2
    assert metrics["resumed_from"] == str(job / "checkpoints" / LAST)
    attempts = json.loads((job / "provenance.json").read_text())["attempts"]
    assert [attempt["status"] for attempt in attempts] == ["interrupted", "ok"]
    logs = "".join(path.read_text() for path in (sweep / ".submitit").rglob("*_log.*"))
    assert "Requeued job" in logs
