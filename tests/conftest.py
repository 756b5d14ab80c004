"""Shared fixtures: configs composed as the command line composes them, at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from alexnet_study.__main__ import main as entry_point
from alexnet_study.config.compose import compose

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ALEXNET_STUDY_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# A small network and dataset that train in a second or two on a 2-core CPU.
TINY = [
    "model=convnet",
    "model.input_size=16",
    "model.layers=[{out_channels:8,kernel_size:3,padding:1,pool:{kernel_size:2,stride:2}},"
    "{out_channels:16,kernel_size:3,padding:1,pool:{kernel_size:2,stride:2}}]",
    "model.hidden=[32]",
    "model.dropout=[0.0]",
    "data=synthetic",
    "data.stored_size=16",
    "data.train_size=320",
    "data.val_size=80",
    "data.test_size=80",
    "data.batch_size=32",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    # The analysis views have their own tests (test_analysis.py, which turns them back on).
    "analysis=none",
]

# Any experiment, shrunk to seconds: synthetic data, one batch per stage, a 67-pixel input (the
# smallest at which every depth and stride setting keeps a feature map), narrow FC layers.
SMOKE = [
    "data=synthetic", "data.num_classes=17", "data.stored_size=32", "data.batch_size=8",
    "data.train_size=32", "data.val_size=16", "data.test_size=16", "trainer=smoke",
    "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
    "trainer.enable_model_summary=false", "model.input_size=67", "model.hidden=[16,16]",
    "~callbacks.dataset_views", "~callbacks.progress_bar", "trainer.enable_progress_bar=false", "repeats=1",
]  # fmt: skip


# Tiny tensors: thread start-up costs more than it saves, and CI has two cores, shared by the workers when
# pytest-xdist runs the suite (-n 2): one thread each then. CPU results depend on the thread count.
THREADS = max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/config.yaml`` with overrides; the run dir and data dirs live in ``tmp_path``."""

    def make(*overrides: str, tiny: bool = False) -> DictConfig:
        base = [*TINY] if tiny else []
        paths = [f"paths.root_dir={tmp_path}"]
        return compose([*paths, *base, *overrides], output_dir=tmp_path / "run")

    return make


def run_cli(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m alexnet_study ARGS`` in a subprocess in ``cwd``: errors as one line
    (``HYDRA_FULL_ERROR=0``), output unbuffered, ``env`` added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "alexnet_study", *args],
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def multirun_in_process(monkeypatch: pytest.MonkeyPatch, root: Path, *overrides: str) -> Path:
    """``python -m alexnet_study OVERRIDES -m`` in this process (no interpreter start-up per sweep)."""
    monkeypatch.setattr(sys, "argv", ["alexnet_study", f"paths.root_dir={root}", *overrides, "-m"])
    GlobalHydra.instance().clear()
    try:
        entry_point()
    finally:
        GlobalHydra.instance().clear()
    sweeps = sorted(root.glob("outputs/*/multiruns/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def cli_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path, *args: str
) -> tuple[int, list[str]]:
    """``python -m alexnet_study paths.root_dir=ROOT ARGS`` in this process: its exit status and the
    lines of its output that say ``[ERROR]``."""
    monkeypatch.setattr(sys, "argv", ["alexnet_study", f"paths.root_dir={root}", *args])
    monkeypatch.chdir(root)
    GlobalHydra.instance().clear()
    try:
        entry_point()
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
    captured = capsys.readouterr()
    return status, [line for line in (captured.out + captured.err).splitlines() if "[ERROR]" in line]


def make_job(sweep: Path, number: int, overrides: list[str], **metrics: object) -> None:
    """A fake sweep job dir: Hydra's ``overrides.yaml`` and a ``metrics.json`` (status ok unless given)."""
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    record = {"status": "ok", "history": [{"epoch": 0, "val/acc": metrics.get("best_val_acc", 0)}], **metrics}
    (job / "metrics.json").write_text(json.dumps(record))


def shared_archive(name: str) -> Path:
    """An archive from ../shared/data; the test is skipped when it is absent."""
    archive = SHARED_DATA / name
    if not archive.is_file():
        pytest.skip(f"{archive} not found (real-data tests need ../shared/data)")
    return archive


@pytest.fixture(scope="session")
def cifar10_jpg_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 100 training and 50 test JPEGs of each CIFAR-10 class from ../shared/data (skip if absent)."""
    archive = shared_archive("cifar10-jpg.tar.gz")
    target = tmp_path_factory.mktemp("cifar10")
    per_split = {"train": 100, "test": 50}
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4:
                continue
            _, split, cls, _ = parts
            key = (split, cls)
            if counts.get(key, 0) < per_split.get(split, 0):
                counts[key] = counts.get(key, 0) + 1
                tar.extract(member, target, filter="data")
    return target / "cifar10-jpg"


def allow_targets(monkeypatch: pytest.MonkeyPatch, prefixes: str = "tests") -> None:
    """Widen the ``_target_`` allowlist to ``prefixes`` as ALEXNET_STUDY_EXTRA_TARGETS does: in the
    environment (for processes started from here) and in this process, which read it at import."""
    from alexnet_study.config import validate

    monkeypatch.setenv(validate.EXTRA_TARGETS_ENV, prefixes)
    monkeypatch.setattr(validate, "EXTRA_TARGET_PREFIXES", validate._prefixes(prefixes))
