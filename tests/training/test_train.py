"""End to end: the command line, run(cfg), metrics.json, TensorBoard files, checkpoints, real data."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import lightning as L
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from alexnet_study.errors import DataError
from alexnet_study.training.run import run

from ..conftest import allow_targets, run_cli


def only_run_dir(cwd: Path) -> Path:
    runs = list((cwd / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def scalar_tags(tensorboard_dir: Path) -> set[str]:
    tags: set[str] = set()
    for events in tensorboard_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


@pytest.mark.slow
def test_cli_smoke_run_writes_metrics_tensorboard_and_checkpoints(tmp_path: Path) -> None:
    """The plain command line: the default alexnet preset at 227 on synthetic data."""
    result = run_cli("data=synthetic", "trainer=smoke", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["params_total"] == metrics["params_trainable"] == 57_044_810  # alexnet, 10 classes
    assert metrics["epochs_run"] == 1 and metrics["seed"] == 42
    for key in ("best_val_acc", "test_acc", "test_acc_top5", "train_loss", "wall_time_s", "images_per_s"):
        assert isinstance(metrics[key], float), key
    assert len(metrics["per_class_acc"]) == 10

    tags = scalar_tags(run_dir / "tensorboard")
    assert {"train/loss_step", "val/acc", "val/acc_best", "lr", "time/images_per_s", "test/acc"} <= tags
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()
    assert (run_dir / "confusion_matrix.csv").read_text().startswith("true\\predicted,class_0,")


def test_cli_config_error_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    result = run_cli("model.activation=swish", "trainer=cpu", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, result.stdout + result.stderr
    assert "model.activation='swish'" in errors[0] and "relu" in errors[0]
    assert "Traceback" not in result.stderr
    metrics = json.loads((only_run_dir(tmp_path) / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "model.activation" in metrics["error"]
    assert not (tmp_path / "data").exists()  # the model is checked before any data is touched


def test_run_learns_the_synthetic_data(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("trainer.max_epochs=4", "optim=adam", "sched=none", tiny=True)
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    assert metrics["best_val_acc"] > 0.5 and metrics["test_acc"] > 0.5  # chance is 0.1 (0.64 and 0.62 here)
    assert metrics["epochs_run"] == 4 and len(metrics["history"]) == 4
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk["test_acc"] == pytest.approx(metrics["test_acc"])
    assert on_disk["tested_checkpoint"].endswith(".ckpt")


def test_run_without_validation_split(make_cfg) -> None:
    cfg = make_cfg("data.val_size=0", "data.val_fraction=0", "trainer.max_epochs=1", tiny=True)
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    assert metrics["best_val_acc"] is None and metrics["test_acc"] is not None


def test_failed_run_still_writes_metrics(make_cfg, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    cfg = make_cfg("data=image_folder", f"data.root={missing}", "data.num_classes=10", "model=convnet", "trainer=cpu")
    with pytest.raises(DataError, match="no train/ folder"):
        run(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert str(missing) in metrics["error"] and metrics["params_total"] > 0


class InterruptAfterFirstBatch(L.Callback):
    """Stands in for Ctrl-C during training."""

    def on_train_batch_end(self, *args: object) -> None:
        raise KeyboardInterrupt


def test_interrupted_run_says_so_in_metrics(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allow_targets(monkeypatch, "tests")  # the _target_ allowlist's escape hatch
    cfg = make_cfg("+callbacks.interrupt._target_=tests.training.test_train.InterruptAfterFirstBatch", tiny=True)
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown ends with sys.exit(1)
            run(cfg)
    finally:
        signal.signal(signal.SIGINT, sigint)  # Lightning ignores further Ctrl-C during its shutdown
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"


def test_real_cifar10_jpegs_beat_chance(make_cfg, cifar10_jpg_subset: Path) -> None:
    """A small net trained briefly on 1,000 real CIFAR-10 images beats 10% by a clear margin."""
    cfg = make_cfg(
        "data=cifar10_folder",
        f"data.root={cifar10_jpg_subset}",
        "data.batch_size=50",
        "model=convnet",
        "model.input_size=32",
        "optim=adam",
        "sched=none",
        "trainer=cpu",
        "trainer.max_epochs=8",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false",
    )
    metrics = run(cfg)
    assert metrics["status"] == "ok"
    assert metrics["test_acc"] > 0.25, metrics["test_acc"]


def scalar_values(tensorboard_dir: Path, tag: str) -> list[float]:
    values: list[float] = []
    for events in sorted(tensorboard_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values += [event.value for event in accumulator.Scalars(tag)]
    return values


def test_history_rows_hold_their_own_epoch_and_short_epochs_log_lr_and_step_loss(make_cfg, tmp_path: Path) -> None:
    # 10 batches an epoch, fewer than log_every_n_steps (50).
    metrics = run(make_cfg("trainer.max_epochs=3", tiny=True))
    history = metrics["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    for row in history:
        assert row["time/epoch_s"] == row["epoch_s"] and row["time/train_s"] == row["train_s"]
        assert row["time/images_per_s"] == row["images_per_s"]
    tensorboard = tmp_path / "run" / "tensorboard"
    assert scalar_values(tensorboard, "time/epoch_s") == pytest.approx([row["epoch_s"] for row in history])
    assert scalar_values(tensorboard, "train/loss_epoch") == pytest.approx([row["train/loss"] for row in history])
    assert len(scalar_values(tensorboard, "lr")) >= 3 and len(scalar_values(tensorboard, "train/loss_step")) >= 3
