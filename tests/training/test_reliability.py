"""Reliability, one injected fault per test: kills, SIGTERM, bad checkpoints, failed saves, divergence,
bad configs and targets; and provenance and reproducibility. Everything runs on the CPU.

The subprocess tests run ``python -m alexnet_study`` for real; test-only callbacks get in through
the ``_target_`` allowlist's escape hatch (``ALEXNET_STUDY_EXTRA_TARGETS=tests``).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from alexnet_study.config.cli import check_command_line
from alexnet_study.config.validate import EXTRA_TARGETS_ENV, validate_config
from alexnet_study.errors import CheckpointError, ConfigError, DataError, DivergenceError, WriteError, check_int
from alexnet_study.training.callbacks import checkpointing
from alexnet_study.training.callbacks.checkpointing import LAST, LastCheckpoint, previous_path
from alexnet_study.training.callbacks.divergence import DivergenceGuard
from alexnet_study.training.callbacks.provenance import git_state
from alexnet_study.training.run import run

from .. import conftest
from ..conftest import REPO_ROOT, THREADS, TINY, allow_targets

# Three epochs of 10 steps; last.ckpt every 4 steps as well as at each epoch end.
RESUMABLE = [
    *TINY,
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]


# -- test-only pieces, instantiated from configs ----------------------------------------------------
class SignalOnce(L.Callback):
    """Sends this process ``signal`` after training step ``step``, once: the marker file records that
    it did, so the very same command runs through the second time (as a restarted job would)."""

    def __init__(self, step: int, signal: str, marker: str) -> None:
        self.step, self.signal, self.marker = step, signal, Path(marker)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), getattr(signal, self.signal))


class Crash(RuntimeError):
    pass


class StopAtStep(L.Callback):
    """Ends training abruptly (as a crash would) after training step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"crashed after step {self.step}")


class NaNAfter(nn.CrossEntropyLoss):
    """Cross-entropy that turns NaN from the ``after``-th training step on (a diverging run, on cue)."""

    def __init__(self, after: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after, self.calls = after, 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = super().forward(logits, target)
        if self.training:
            self.calls += 1
            if self.calls > self.after:
                return loss * float("nan")
        return loss


# -- helpers --------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _restore_global_torch_flags() -> Iterator[None]:
    """trainer.deterministic=true switches torch's deterministic mode on for the whole process."""
    yield
    torch.use_deterministic_algorithms(False)


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return conftest.run_cli(
        *args,
        cwd=cwd,
        timeout=timeout,
        PYTHONPATH=str(REPO_ROOT),  # for tests.training.test_reliability.* targets
        **{EXTRA_TARGETS_ENV: "tests"},
        # The same thread count as the in-process runs compared with (conftest's _few_threads).
        OMP_NUM_THREADS=str(THREADS),
    )


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def fingerprint(metrics: dict[str, Any]) -> dict[str, Any]:
    """What must match between two runs that trained identically (timings excluded)."""
    keys = ("val/acc", "val/loss", "train/loss", "train/acc", "val/acc_best")
    return {
        "epochs_run": metrics["epochs_run"],
        "history": [{k: r.get(k) for k in keys} for r in metrics["history"]],
        **{k: metrics.get(k) for k in ("best_val_acc", "val_acc", "test_acc", "test_loss", "per_class_acc")},
    }


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "[ERROR]" in line]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: RESUMABLE run in-process, start to finish."""
    from alexnet_study.config.compose import compose

    root = tmp_path_factory.mktemp("uninterrupted")
    torch.set_num_threads(THREADS)
    try:
        return run(compose([f"paths.root_dir={root}", *RESUMABLE], output_dir=root / "run"))
    finally:
        torch.use_deterministic_algorithms(False)


# -- resume and interruption ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One command, run three times in the same output dir: SIGTERM at step 6, then (resumed) SIGKILL
    at step 17, then resumed to the end."""
    cwd = tmp_path_factory.mktemp("killed")
    run_dir = cwd / "outputs" / "run"
    command = [
        *RESUMABLE,
        f"hydra.run.dir={run_dir}",
        "+callbacks.sigterm._target_=tests.training.test_reliability.SignalOnce",
        "+callbacks.sigterm.step=6",
        "+callbacks.sigterm.signal=SIGTERM",
        f"+callbacks.sigterm.marker={cwd / 'sigterm.sent'}",
        "+callbacks.sigkill._target_=tests.training.test_reliability.SignalOnce",
        "+callbacks.sigkill.step=17",
        "+callbacks.sigkill.signal=SIGKILL",
        f"+callbacks.sigkill.marker={cwd / 'sigkill.sent'}",
    ]
    outcome: dict[str, Any] = {"run_dir": run_dir}
    outcome["sigterm"] = run_cli(*command, cwd=cwd)
    last = run_dir / "checkpoints" / LAST
    outcome["after_sigterm"] = {
        "metrics": read_json(run_dir / "metrics.json"),
        "last": torch.load(last, map_location="cpu", weights_only=True) if last.exists() else None,
    }
    outcome["sigkill"] = run_cli(*command, cwd=cwd)
    outcome["after_sigkill_step"] = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    outcome["resumed"] = run_cli(*command, cwd=cwd)
    return outcome


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_says_interrupted_and_exits_nonzero(killed_and_resumed: dict[str, Any]) -> None:
    result = killed_and_resumed["sigterm"]
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert "stopped by SIGTERM" in result.stdout + result.stderr
    after = killed_and_resumed["after_sigterm"]
    assert after["metrics"]["status"] == "interrupted"
    assert after["last"] is not None and after["last"]["global_step"] == 6  # saved at the signal, mid-epoch
    assert after["last"]["epoch"] == 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes_to_identical_results(
    killed_and_resumed: dict[str, Any], uninterrupted: dict[str, Any]
) -> None:
    sigkill = killed_and_resumed["sigkill"]
    assert sigkill.returncode == -signal.SIGKILL, sigkill.stderr[-3000:]
    assert "resume=auto: continuing from" in sigkill.stdout + sigkill.stderr  # it went on from the SIGTERM state
    assert killed_and_resumed["after_sigkill_step"] == 16  # the every-4-steps checkpoint before the kill at 17

    resumed = killed_and_resumed["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run_dir = killed_and_resumed["run_dir"]
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "ok" and metrics["resumed_from"] == str(run_dir / "checkpoints" / LAST)
    assert fingerprint(metrics) == fingerprint(uninterrupted)  # same epochs, same val accuracy, bit for bit
    assert metrics["epochs_run"] == 3

    attempts = read_json(run_dir / "provenance.json")["attempts"]
    # SIGTERM, SIGKILL (which leaves its attempt "running": nothing runs after a SIGKILL), done.
    assert [a["status"] for a in attempts] == ["interrupted", "running", "ok"]
    assert not previous_path(run_dir / "checkpoints" / LAST).exists()  # the spare generation is gone at the end


def test_training_loader_resumes_at_the_next_batch_of_the_same_order() -> None:
    from alexnet_study.data.base import DeviceBatchLoader, EpochSampler, Split

    split = Split(torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1), torch.arange(20))

    def loader() -> DeviceBatchLoader:
        sampler = EpochSampler(20, shuffle=True, seed=3)
        sampler.set_epoch(2)
        return DeviceBatchLoader(split, 4, sampler, drop_last=True)

    whole = [labels.tolist() for _, labels in loader()]
    first = loader()
    batches = iter(first)
    seen = [next(batches)[1].tolist() for _ in range(2)]
    state = first.state_dict()
    assert state["batches_served"] == 2

    second = loader()
    second.load_state_dict(state)
    assert seen + [labels.tolist() for _, labels in second] == whole
    assert [labels.tolist() for _, labels in second] == whole  # the skip applies to one epoch only

    finished = loader()
    finished.load_state_dict({**state, "batches_served": 5})  # an epoch-end checkpoint: start the next epoch afresh
    assert len(list(finished)) == 5
    with pytest.raises(ConfigError, match="batch size 8"):
        loader().load_state_dict({**state, "batch_size": 8})


def test_corrupt_last_checkpoint_falls_back_to_the_previous_one_or_stops(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt_dir = tmp_path / "run" / "checkpoints"
    allow_targets(monkeypatch, "tests")
    with pytest.raises(Crash):  # at step 12: last.ckpt holds step 10 (epoch 0's end), last.prev.ckpt step 8
        run(
            make_cfg(
                *RESUMABLE,
                "+callbacks.stop._target_=tests.training.test_reliability.StopAtStep",
                "+callbacks.stop.step=12",
            )
        )
    last, previous = ckpt_dir / LAST, previous_path(ckpt_dir / LAST)
    assert torch.load(previous, weights_only=True)["global_step"] == 8

    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a full disk or a broken copy
    metrics = run(make_cfg(*RESUMABLE, "trainer.max_epochs=1"))
    assert metrics["status"] == "ok"
    assert metrics["resumed_from"] == str(previous)
    assert str(last) in metrics["warnings"][0] and "previous checkpoint" in metrics["warnings"][0]

    # Nothing to fall back on: an error naming the file, never a silent fresh start.
    last.write_bytes(b"not a checkpoint")
    previous.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=re.escape(f"{str(last)!r}: unreadable checkpoint")) as failure:
        run(make_cfg(*RESUMABLE))
    # The run finished above: its metrics.json stays, this failure is recorded beside it.
    assert read_json(tmp_path / "run" / "metrics.json")["status"] == "ok"
    [failed] = (tmp_path / "run").glob("failed-*.json")
    assert read_json(failed)["status"] == "failed" and failed.name in str(failure.value)

    # An explicit ckpt_path must exist, and must hold the training state (not only the weights).
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*nowhere\.ckpt: no such file"):
        run(make_cfg(*TINY, f"ckpt_path={tmp_path / 'nowhere.ckpt'}"))
    best = next(ckpt_dir.glob("best-*.ckpt"))
    with pytest.raises(CheckpointError, match="not a full training state"):
        run(make_cfg(*TINY, f"ckpt_path={best}"))


def test_failed_save_keeps_the_previous_checkpoint_and_stops_clearly(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save
    saves = []

    def disk_fills_up(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(file)
        if len(saves) <= 2:  # epoch 0: the best and the last checkpoint
            return real_save(obj, file, *args, **kwargs)
        file.write(b"\0" * 4096)  # half a checkpoint, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(CheckpointError, match="No space left on device") as failure:
        run(make_cfg(*TINY))
    monkeypatch.undo()

    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert "intact" in str(failure.value) and str(ckpt_dir) in str(failure.value)
    last = torch.load(ckpt_dir / LAST, map_location="cpu", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 10  # epoch 0's state, loadable
    assert not [p for p in ckpt_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written leftovers
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "failed" and "No space left on device" in metrics["error"]


# -- divergence ------------------------------------------------------------------------------------
def test_nan_loss_stops_the_run_and_no_nan_weights_are_saved(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allow_targets(monkeypatch, "tests")
    cfg = make_cfg(
        *TINY, "trainer.max_epochs=3", "loss._target_=tests.training.test_reliability.NaNAfter", "+loss.after=12"
    )
    with pytest.raises(DivergenceError, match=r"loss became nan at epoch 1, step 12 \(learning rate [0-9.e-]+\)"):
        run(cfg)
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "diverged" and metrics["diverged_at"]["step"] == 12
    assert metrics["epochs_run"] == 1 and metrics["best_val_acc"] is not None  # epoch 0 stays on record

    ckpt_dir = tmp_path / "run" / "checkpoints"
    for path in ckpt_dir.glob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert state["global_step"] == 10, path.name  # epoch 0's end: nothing later was saved
        assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())


@pytest.mark.slow
def test_diverging_sweep_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        *TINY, "trainer.max_epochs=1", "optim.lr=1e4,0.05", f"hydra.sweep.dir={sweep_dir}", "-m", cwd=tmp_path
    )
    assert result.returncode != 0  # Hydra reports the failed job after running all of them
    diverged, fine = (read_json(sweep_dir / str(job) / "metrics.json") for job in (0, 1))
    assert diverged["status"] == "diverged" and "training diverged" in diverged["error"]
    assert "learning rate" in diverged["error"] and diverged["diverged_at"]["step"] < 5
    assert not list((sweep_dir / "0").glob("checkpoints/*.ckpt"))  # diverged at once: nothing saved
    assert fine["status"] == "ok" and fine["epochs_run"] == 1
    assert any("training diverged" in line for line in error_lines(result))


# -- config validation and _target_ safety -----------------------------------------------------------
BAD_CONFIGS = [
    ("model.activation=swish", "model.activation='swish': unknown; accepted: relu"),
    ("model.fc_activation=softplus", "model.fc_activation='softplus': unknown"),
    ("optim._target_=torch.optim.Sgdd", "optim._target_='torch.optim.Sgdd': no such class"),
    ("loss._target_=torch.nn.CrossEntropyLosss", "loss._target_='torch.nn.CrossEntropyLosss': no such class"),
    ("optim._target_=torch.optim", "optim._target_='torch.optim': no such class"),  # a module, not callable
    ("optim._target_=torch", "optim._target_='torch': no such class"),  # no dot at all
    ("model.dropout=[1.0]", "model.dropout[0]=1.0: must be a probability in [0, 1)"),
    ("model.dropout=[-0.1]", "model.dropout[0]=-0.1: must be a probability in [0, 1)"),
    ("optim.lr=0", "optim.lr=0: must be a finite number > 0"),
    ("optim.lr=-0.1", "optim.lr=-0.1: must be a finite number > 0"),
    ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1"),
    ("data.eval_batch_size=-4", "data.eval_batch_size=-4: must be an integer >= 1"),
    ("model.conv_strides=[0,1]", "model.conv_strides[0]=0: must be an integer >= 1"),
    ("model.pool_strides=[2,0]", "model.pool_strides[1]=0: must be an integer >= 1"),
    ("model.layers.0.kernel_size=0", "model.layers[0].kernel_size=0: must be an integer >= 1"),
    ("model.conv_depth=3", "model.conv_depth=3: this preset has 2 conv layers; accepted: 1..2"),
    ("model.fc_depth=5", "model.fc_depth=5: accepted: 1..4"),
    ("model.num_classes=7", "model.num_classes=7: the data has data.num_classes=10"),
    ("loss.label_smoothing=1.5", "loss.label_smoothing=1.5: must be a finite number >= 0 and < 1"),
]


@pytest.mark.parametrize(("override", "message"), BAD_CONFIGS, ids=[o for o, _ in BAD_CONFIGS])
def test_bad_config_value_is_one_clear_line(make_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        run(make_cfg(*TINY, override))  # checked where the value is used, before any data is read
    assert message in str(err.value) and "\n" not in str(err.value)


def test_integer_settings_name_the_key_and_the_minimum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        LastCheckpoint(tmp_path, every_n_train_steps=-1)
    assert str(err.value) == (
        "callbacks.last_checkpoint.every_n_train_steps=-1: must be an integer >= 0 (0: save at epoch ends only)"
    )
    with pytest.raises(ConfigError) as err:
        DivergenceGuard(check_every_n_steps=True)
    assert str(err.value) == "callbacks.divergence_guard.check_every_n_steps=True: must be an integer >= 1"
    assert check_int("data.batch_size", 3, 1) == 3 and LastCheckpoint(tmp_path).every_n_train_steps == 0
    for bad in (0, 2.0, "2", None):
        with pytest.raises(ConfigError, match=r"^k=.*: must be an integer >= 1$"):
            check_int("k", bad, 1)


def test_class_count_is_checked_against_the_dataset_before_loading_it(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.num_classes=10: cifar100 has 100 classes"):
        validate_config(make_cfg("data=cifar100", "data.num_classes=10"))
    for name in ("cat", "dog", "fox"):
        (tmp_path / "photos" / "train" / name).mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"data.num_classes=10: .*train has 3 class folders; set data.num_classes=3"):
        validate_config(make_cfg("data=image_folder", f"data.root={tmp_path / 'photos'}", "data.num_classes=10"))


def test_invalid_run_stops_before_data_or_directories(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.lr=-1"):
        run(make_cfg("data=cifar10", "optim.lr=-1"))  # cifar10 would download into tmp_path/data
    assert not (tmp_path / "data").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.json"]  # the failure, on record
    assert read_json(tmp_path / "run" / "metrics.json")["status"] == "failed"


@pytest.mark.parametrize(
    "overrides",
    [
        ["model._target_=os.system"],
        ["model._target_=builtins.eval"],
        ["+callbacks.x._target_=subprocess.run", "+callbacks.x._args_=[[touch,PWNED]]"],
        ["+callbacks.x._target_=builtins.exec", '+callbacks.x._args_=[\'open("PWNED", "w")\']'],
        ["+callbacks.x._target_=torch.hub.load"],
        ["+logger.x._target_=builtins.exec", "+logger.x._partial_=true"],
    ],
    ids=["os.system", "eval", "subprocess.run", "exec", "torch.hub", "partial"],
)
def test_targets_outside_the_allowlist_are_refused_before_anything_runs(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"_target_='[a-z.]+': (not allowed|refused)"):
        run(make_cfg(*TINY, *overrides))
    assert not (tmp_path / "PWNED").exists()
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "failed" and "params_total" not in metrics  # refused before the model was built


def test_allowlist_can_be_extended_only_from_the_environment(make_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_cfg(
        *TINY, "+callbacks.stop._target_=tests.training.test_reliability.StopAtStep", "+callbacks.stop.step=1"
    )
    with pytest.raises(ConfigError, match=r"tests\.training\.test_reliability\.StopAtStep"):
        validate_config(cfg)
    allow_targets(monkeypatch, "tests")
    validate_config(cfg)
    allow_targets(monkeypatch, "tests.training.test_reliability")
    validate_config(cfg)
    allow_targets(monkeypatch, "test")  # whole module names only: "test" is not "tests"
    with pytest.raises(ConfigError):
        validate_config(cfg)


@pytest.mark.slow
def test_cli_refuses_bad_overrides_in_one_line_before_hydra_acts(tmp_path: Path) -> None:
    unknown = run_cli("optim=foo", cwd=tmp_path)
    assert unknown.returncode == 2
    assert error_lines(unknown) == [
        "[alexnet_study][ERROR] - optim=foo: no such preset in conf/optim/; accepted: adadelta, adam, adamw, rmsprop, sgd"
    ]
    assert "Traceback" not in unknown.stderr and not (tmp_path / "outputs").exists()

    # Hydra instantiates hydra.callbacks itself, before our code: refused before that.
    exec_ = run_cli(
        "+hydra.callbacks.x._target_=builtins.exec", '+hydra.callbacks.x._args_=[\'open("PWNED","w")\']', cwd=tmp_path
    )
    assert exec_.returncode == 2
    assert len(error_lines(exec_)) == 1 and "hydra.callbacks.x._target_='builtins.exec': not allowed" in exec_.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "outputs").exists()


# Each way a config once ran code despite the allowlist, one test each.
def test_a_target_made_by_a_resolver_at_resolution_time_is_checked(make_cfg, tmp_path: Path) -> None:
    """A ``_target_`` inside a plain dict that ``${oc.decode:...}`` makes of a string stored elsewhere."""
    payload = "'{_target_: builtins.open, file: PWNED, mode: w}'"
    cfg = make_cfg(*TINY, f"+stash={payload}", "+callbacks.x='${oc.decode:${stash}}'")
    with pytest.raises(ConfigError, match=r"^callbacks\.x\._target_='builtins\.open': not allowed"):
        validate_config(cfg)
    hidden = [f"+hydra.job.env_set.STASH={payload}", "+hydra.callbacks.x='${oc.decode:${hydra.job.env_set.STASH}}'"]
    with pytest.raises(ConfigError, match=r"^hydra\.callbacks\.x\._target_='builtins\.open': not allowed"):
        check_command_line(hidden)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.import_module",  # importlib.import_module
        "torch.cuda.memory.CUDAPluggableAllocator",  # opens a shared library
        "torch.distributed.checkpoint.state_dict_loader.load",  # unpickles the checkpoint's metadata
        "alexnet_study.training.callbacks.checkpointing.torch.load",  # a refused function under a permitted module's name
    ],
)
def test_only_the_listed_callables_pass_whatever_package_they_are_in(make_cfg, target: str) -> None:
    import alexnet_study.training.callbacks.checkpointing  # noqa: F401  (so that its module attribute ``torch`` resolves)

    with pytest.raises(ConfigError, match=r"^callbacks\.x\._target_='.*': (not allowed|no such class)"):
        validate_config(make_cfg(*TINY, f"+callbacks.x._target_={target}"))


def test_identity_not_the_name_decides(make_cfg) -> None:
    """The same class under another module's name is the same callable: allowed."""
    validate_config(make_cfg(*TINY, "optim._target_=torch.optim.sgd.SGD"))


@pytest.mark.parametrize(
    "flags",
    [["--config-dir", "{tmp}"], ["-cd", "{tmp}"], ["--config-path", str(REPO_ROOT / "conf")], ["--info", "all"], []],
    ids=["--config-dir", "-cd", "--config-path", "--info", "none"],
)
def test_the_command_line_is_checked_whatever_flags_are_given(tmp_path: Path, flags: list[str]) -> None:
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    with pytest.raises(ConfigError, match=r"^hydra\.callbacks\.x\._target_='builtins\.exec': not allowed"):
        check_command_line([*flags, "+hydra.callbacks.x._target_=builtins.exec"])
    with pytest.raises(ConfigError, match=r"^hydra\.job_logging\.handlers\.console\.class='os\.system': not allowed"):
        check_command_line([*flags, "hydra.job_logging.handlers.console.class=os.system"])


def test_the_allowlist_is_widened_only_by_the_environment_the_process_started_in(
    make_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"^hydra\.job\.env_set\.ALEXNET_STUDY_EXTRA_TARGETS='builtins': refused"):
        check_command_line(["+hydra.job.env_set.ALEXNET_STUDY_EXTRA_TARGETS=builtins"])
    with pytest.raises(ConfigError, match=r"^hydra\.job\.env_set\.LD_PRELOAD='/tmp/x\.so': refused"):
        check_command_line(["+hydra.job.env_set.LD_PRELOAD=/tmp/x.so"])
    monkeypatch.setenv(EXTRA_TARGETS_ENV, "builtins")  # as env_set does, after the process started
    with pytest.raises(ConfigError, match=r"callbacks\.x\._target_='builtins\.print': not allowed"):
        validate_config(make_cfg(*TINY, "+callbacks.x._target_=builtins.print"))


class _Rerun:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_experimental_rerun_is_refused_without_reading_the_file(tmp_path: Path) -> None:
    pickled = tmp_path / "config.pickle"
    pickled.write_bytes(pickle.dumps(_Rerun(tmp_path / "PWNED")))
    with pytest.raises(ConfigError, match=r"^--experimental-rerun '.*config\.pickle': refused: it unpickles the file"):
        check_command_line(["--experimental-rerun", str(pickled)])
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_cli_refuses_code_loading_flags_and_targets_in_one_line(tmp_path: Path) -> None:
    pickled = tmp_path / "config.pickle"
    pickled.write_bytes(pickle.dumps(_Rerun(tmp_path / "PWNED")))
    rerun = run_cli("--experimental-rerun", str(pickled), cwd=tmp_path)
    assert rerun.returncode == 2 and len(error_lines(rerun)) == 1, rerun.stderr
    assert "--experimental-rerun" in error_lines(rerun)[0] and not (tmp_path / "PWNED").exists()
    callback = run_cli("-cd", str(tmp_path), "+hydra.callbacks.x._target_=builtins.exec", cwd=tmp_path)
    assert callback.returncode == 2 and len(error_lines(callback)) == 1, callback.stderr
    assert not (tmp_path / "outputs").exists()


# -- provenance and reproducibility ----------------------------------------------------------------
def test_run_dir_records_provenance(make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "study.txt").write_text("v1\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "study.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)

    metrics = run(make_cfg(*TINY, "trainer.max_epochs=1"))
    record = read_json(tmp_path / "run" / "provenance.json")
    assert record["git"] == {"commit": commit, "dirty": False, "repo": str(repo)}
    assert record["seed"] == 42 and record["status"] == "ok" and record["device"].startswith("cpu")
    versions = record["versions"]
    assert {"python", "torch", "torchvision", "lightning", "hydra-core", "cuda", "cudnn"} <= set(versions)
    assert versions["torch"] == torch.__version__.split("+")[0]
    dataset = record["dataset"]
    assert dataset["splits"] == {"train": 320, "val": 80, "test": 80} and len(dataset["fingerprint"]) == 32
    assert record["started_at"] <= record["finished_at"] and metrics["status"] == "ok"

    (repo / "study.txt").write_text("v2\n")
    assert git_state(repo)["dirty"] is True
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "repo": None}  # no repository: nulls, no error
    other = read_json(tmp_path / "run" / "provenance.json")["dataset"]["fingerprint"]
    run(make_cfg(*TINY, "trainer.max_epochs=1", "data.data_seed=1", "paths.output_dir=" + str(tmp_path / "run2")))
    assert read_json(tmp_path / "run2" / "provenance.json")["dataset"]["fingerprint"] != other


def test_same_seed_deterministic_cpu_runs_give_identical_metrics(make_cfg, uninterrupted: dict[str, Any]) -> None:
    again = run(make_cfg(*RESUMABLE))
    assert fingerprint(again) == fingerprint(uninterrupted)
    assert uninterrupted["history"][-1]["val/acc"] > 0.3  # it learned something: the comparison means something


def test_deterministic_on_a_gpu_warns_instead_of_failing(make_cfg, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from alexnet_study.training import run as train

    monkeypatch.setattr(train, "uses_cuda", lambda accelerator="auto": True)  # as on a CUDA machine
    trainer = train.build_trainer(make_cfg(*TINY, "trainer.deterministic=true"))
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert any("runs as 'warn'" in r.getMessage() for r in caplog.records)
    assert trainer is not None


# -- a finished run's record ------------------------------------------------------------------------
QUICK = [*TINY, "trainer.max_epochs=1", "data.train_size=64", "data.val_size=32", "data.test_size=32"]


def record_of(run_dir: Path) -> dict[str, bytes]:
    """The files that make a run's record: metrics.json, provenance.json and Hydra's .hydra/."""
    files = [run_dir / "metrics.json", run_dir / "provenance.json", *sorted((run_dir / ".hydra").glob("*"))]
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in files if path.is_file()}


@pytest.mark.slow
def test_rerunning_a_finished_run_or_refusing_an_override_keeps_its_record(tmp_path: Path) -> None:
    run_dir = tmp_path / "outputs" / "run"
    command = [*QUICK, f"hydra.run.dir={run_dir}"]
    assert run_cli(*command, cwd=tmp_path).returncode == 0
    finished = record_of(run_dir)
    metrics = json.loads(finished["metrics.json"])
    assert metrics["status"] == "ok" and isinstance(metrics["train_loss"], float)

    again = run_cli(*command, cwd=tmp_path)  # the documented resume command, on a finished run
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing left to train" in again.stdout + again.stderr
    assert read_json(run_dir / "metrics.json") == metrics  # nothing became null
    provenance = read_json(run_dir / "provenance.json")
    assert provenance["status"] == "ok" and [a["status"] for a in provenance["attempts"]] == ["ok", "ok"]
    finished = record_of(run_dir)

    refused = run_cli(*command, "optim.lr=-1", cwd=tmp_path)  # a typo aimed at the finished run
    assert refused.returncode == 2
    [line] = error_lines(refused)
    assert "optim.lr=-1: must be a finite number > 0" in line and "kept as it was" in line
    assert record_of(run_dir) == finished  # metrics.json, provenance.json and .hydra/ byte for byte
    [failure] = run_dir.glob("failed-*.json")
    assert failure.name in line and read_json(failure)["status"] == "failed"


@pytest.mark.slow
def test_a_resumed_sweep_keeps_its_finished_jobs_and_their_report(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = [*QUICK, "optim.lr=0.05,0.01", f"hydra.sweep.dir={sweep_dir}", "-m"]
    assert run_cli(*command, cwd=tmp_path).returncode == 0
    records = {job: record_of(sweep_dir / job) for job in ("0", "1")}
    report = (sweep_dir / "jobs.csv").read_text()  # one row per job

    again = run_cli(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    for job in ("0", "1"):
        assert record_of(sweep_dir / job)["metrics.json"] == records[job]["metrics.json"]
        assert (sweep_dir / job / ".hydra" / "overrides.yaml").read_bytes() == records[job][".hydra/overrides.yaml"]
    assert (sweep_dir / "jobs.csv").read_text() == report
    rows = list(csv.DictReader(report.splitlines()))
    assert all(float(row["train_loss"]) > 0 and float(row["test_acc"]) >= 0 for row in rows), rows

    finished = {job: record_of(sweep_dir / job) for job in ("0", "1")}
    typo = run_cli(*QUICK, "optim.lr=0.05,-1", f"hydra.sweep.dir={sweep_dir}", "-m", cwd=tmp_path)
    assert typo.returncode == 2
    [line] = error_lines(typo)
    assert "optim.lr=-1" in line and str(sweep_dir / "1") in line
    assert {job: record_of(sweep_dir / job) for job in ("0", "1")} == finished


def test_a_failed_attempt_on_a_finished_run_is_written_beside_its_record(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    quick = [*QUICK, "sched=none"]  # a one-cycle schedule cannot be trained on past its planned end
    assert run(make_cfg(*quick))["status"] == "ok"
    finished = record_of(run_dir)

    with pytest.raises(ConfigError, match=r"optim\.lr=-1: .*holds a finished run, kept as it was; .*failed-"):
        run(make_cfg(*quick, "optim.lr=-1"))
    assert record_of(run_dir) == finished

    # Asked to train on, it crashes: the crash is on record beside the finished run, not over it.
    allow_targets(monkeypatch, "tests")
    stop = [
        "trainer.max_epochs=2",
        "+callbacks.stop._target_=tests.training.test_reliability.StopAtStep",
        "+callbacks.stop.step=3",
    ]
    with pytest.raises(Crash):
        run(make_cfg(*quick, *stop))
    assert record_of(run_dir)["metrics.json"] == finished["metrics.json"]
    provenance = read_json(run_dir / "provenance.json")
    assert provenance["status"] == "ok" and [a["status"] for a in provenance["attempts"]] == ["ok", "failed"]
    refused, crash = (read_json(path) for path in sorted(run_dir.glob("failed-*.json")))
    assert refused["status"] == crash["status"] == "failed" and "optim.lr=-1" in refused["error"]
    assert "crashed after step 3" in crash["error"] and crash["epochs_run"] == 1


def test_nothing_left_to_train_and_no_finished_record_tests_again_keeping_the_rest(make_cfg, tmp_path: Path) -> None:
    first = run(make_cfg(*QUICK))
    metrics_file = tmp_path / "run" / "metrics.json"
    # As if the first attempt had stopped after training (killed during its test).
    metrics_file.write_text(json.dumps({"status": "interrupted"}))
    again = run(make_cfg(*QUICK))
    assert again["resumed_from"].endswith(LAST) and again["status"] == "ok"
    for key in ("train_loss", "train_acc", "val_acc", "val_loss", "best_val_acc", "test_acc", "epochs_run"):
        assert again[key] == pytest.approx(first[key]), key
    assert read_json(metrics_file)["train_loss"] == pytest.approx(first["train_loss"])


# -- a full disk ------------------------------------------------------------------------------------
def no_space_left() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def disk_fills_on_write(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``fill(name)``: writing a file whose name contains ``name`` writes half, then fails with ENOSPC."""

    def fill(name: str) -> None:
        real_write_text = Path.write_text

        def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
            if name not in self.name:
                return real_write_text(self, data, *args, **kwargs)
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise no_space_left()

        monkeypatch.setattr(Path, "write_text", write_text)

    return fill


def test_a_full_disk_during_a_checkpoint_names_the_file_and_the_space_left(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class FillsUp:
        """The checkpoint's temporary file: 2,000 bytes fit, then ENOSPC (torch turns that into a RuntimeError)."""

        def __init__(self, file: Any) -> None:
            self.file, self.written = file, 0

        def write(self, data: bytes) -> int:
            if self.written + len(data) > 2000:
                raise no_space_left()
            self.written += len(data)
            return self.file.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.file, name)

        def __enter__(self) -> FillsUp:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

    def open_checkpoint(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 (closed by the caller's with)
        return FillsUp(file) if str(path).endswith(".ckpt.tmp") else file

    monkeypatch.setattr(checkpointing, "open", open_checkpoint, raising=False)
    with pytest.raises(CheckpointError) as failure:
        run(make_cfg(*TINY))
    message = str(failure.value)
    assert re.search(
        r"could not write checkpoint .*/checkpoints/best-epoch000.*\.ckpt: No space left on device", message
    )
    assert re.search(r"\([0-9.]+ [kMGT]?B(ytes)? free there\)", message) and "\n" not in message
    assert not leftovers(tmp_path / "run")
    assert read_json(tmp_path / "run" / "metrics.json")["status"] == "failed"
    assert read_json(tmp_path / "run" / "provenance.json")["status"] == "failed"


def test_an_unrelated_error_inside_a_checkpoint_save_stays_itself(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_pickle(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"\0" * 100)
        raise RuntimeError("cannot pickle a generator")

    monkeypatch.setattr(torch, "save", cannot_pickle)
    with pytest.raises(RuntimeError, match="cannot pickle a generator") as failure:
        run(make_cfg(*TINY))
    assert not isinstance(failure.value, CheckpointError)
    assert not leftovers(tmp_path / "run")


def test_a_full_disk_at_metrics_json_fails_the_run_and_says_so(make_cfg, tmp_path: Path, disk_fills_on_write) -> None:
    disk_fills_on_write("metrics.json")
    with pytest.raises(WriteError, match=r"could not write .*/run/metrics\.json: No space left on device \(.* free"):
        run(make_cfg(*TINY, "trainer.max_epochs=1"))
    assert not (tmp_path / "run" / "metrics.json").exists() and not leftovers(tmp_path / "run")
    provenance = read_json(tmp_path / "run" / "provenance.json")
    assert provenance["status"] == "failed" and "metrics.json" in provenance["attempts"][-1]["error"]


def test_a_failed_run_that_cannot_write_its_metrics_says_so_on_stderr(
    make_cfg, tmp_path: Path, disk_fills_on_write, capsys: pytest.CaptureFixture[str]
) -> None:
    disk_fills_on_write("metrics.json")
    missing = f"data.root={tmp_path / 'nowhere'}"
    with pytest.raises(DataError, match="no train/ folder"):  # the run's own error stays the one raised
        run(make_cfg("data=image_folder", missing, "data.num_classes=10", "model=convnet", "trainer=cpu"))
    assert re.search(r"could not write .*/run/metrics\.json: No space left on device", capsys.readouterr().err)
    assert read_json(tmp_path / "run" / "provenance.json")["status"] == "failed" and not leftovers(tmp_path / "run")


def test_a_full_disk_at_provenance_json_is_said_on_stderr(
    make_cfg, tmp_path: Path, disk_fills_on_write, capsys: pytest.CaptureFixture[str]
) -> None:
    disk_fills_on_write("provenance.json")
    metrics = run(make_cfg(*TINY, "trainer.max_epochs=1"))  # the results themselves are on record
    assert metrics["status"] == "ok" and read_json(tmp_path / "run" / "metrics.json")["status"] == "ok"
    assert re.search(r"could not write .*/run/provenance\.json: No space left", capsys.readouterr().err)
    assert not leftovers(tmp_path / "run")


def test_a_full_disk_under_tensorboard_is_one_error_not_hidden_by_the_hparams(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    writes = []

    def write(self: Any, data: bytes) -> None:
        writes.append(len(data))
        if len(writes) > 3:  # the file header and the first few events fit
            raise no_space_left()

    monkeypatch.setattr(RecordWriter, "write", write)
    with pytest.raises(WriteError) as failure:
        run(make_cfg(*TINY, "trainer.max_epochs=1"))
    assert re.search(r"could not write the TensorBoard events in .*/run/tensorboard: No space left", str(failure.value))
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "failed" and "TensorBoard" in metrics["error"]
    assert read_json(tmp_path / "run" / "provenance.json")["status"] == "failed"


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_with_no_temporary_files_left(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run_dir = disk / "run"
        # A ~2 MB network: its weights fit on the 3 MB disk, its full training state (with momentum) does not.
        result = run_cli(*QUICK, "model.hidden=[2048]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr[-3000:]
        [line] = error_lines(result)
        assert re.search(
            r"could not write checkpoint .*\.ckpt: No space left on device \([0-9.]+ [kMB]+ free there\)", line
        )
        assert "Traceback" not in result.stderr and "Logging error" not in result.stderr
        assert not leftovers(run_dir)
        assert read_json(run_dir / "metrics.json")["status"] == "failed"
        assert read_json(run_dir / "provenance.json")["status"] == "failed"
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
