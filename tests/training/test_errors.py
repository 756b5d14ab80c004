"""The error helpers the one-line reports share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from alexnet_study.errors import CheckpointError, ConfigError, DataError, first_line, quoted
from alexnet_study.models.pretrained import read_state_dict
from alexnet_study.training.callbacks.checkpointing import check_checkpoint

from ..conftest import TINY, cli_in_process


def test_first_line_of_an_error_message() -> None:
    assert first_line(ValueError("  bad value\nsecond line\n")) == "bad value"
    assert first_line(ConfigError("optim.lr=0: must be a number > 0")) == "optim.lr=0: must be a number > 0"
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt"  # an empty message: the type's name
    assert first_line(RuntimeError(" \n "), empty="") == ""


def test_an_unresolvable_target_is_one_line(make_cfg) -> None:
    from omegaconf import open_dict

    from alexnet_study.config.validate import check_targets

    cfg = make_cfg()
    with open_dict(cfg):
        cfg.optim._target_ = "${no.such.key}"
    with pytest.raises(ConfigError, match=r"^optim\._target_: cannot be resolved \(.*no\.such\.key.*\)$"):
        check_targets(cfg)


# -- bad values: one line naming the key, the value and what is accepted; exit status 2 ------------------
BAD_VALUES = [
    (["seed=abc"], "seed='abc': must be an integer >= 0"),
    (["sched=step", "sched.scheduler.step_size=0"], "sched.scheduler.step_size=0: must be an integer >= 1"),
    (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches=0: must be an integer >= 1 (or a fraction"),
    (["epochs=-1", "+trainer.max_steps=50"], "epochs=-1: must be an integer >= 1 (a run limited by steps"),
    (["trainer.precision=foo"], "trainer.precision='foo': accepted: 64, 32, 16, transformer-engine"),
    (["model.input_size=100000"], "model.input_size=100000: must be an integer in 1..1024 (pixels per side)"),
    (["optim.lr=inf"], "optim.lr=inf: must be a finite number > 0"),
    (["sched=step", "sched.scheduler.gamma=-1"], "sched.scheduler.gamma=-1: must be a finite number > 0"),
    (["data.noise=-1"], "data.noise=-1: must be a finite number >= 0 (the pixel noise's standard deviation)"),
    (["model.dropconnect=maybe"], "model.dropconnect='maybe': accepted: true, false"),
    # A key the target does not take, in a group (optimizer, a DataModule's base class, the analysis views) or
    # where the group takes none (analysis=none), or a misspelt callback that makes an entry without a target.
    (["+optim.foo=2"], "optim.foo=2: not a setting of torch.optim.SGD; accepted: params, lr, momentum,"),
    (
        ["+data.colour=3"],
        "data.colour=3: not a setting of alexnet_study.data.SyntheticDataModule; accepted: train_size",
    ),
    (
        ["analysis=default", "+analysis.foo=1"],
        "analysis.foo=1: not a setting of the analysis views; accepted: cam_images,",
    ),
    (
        ["+analysis.foo=1"],
        "analysis.foo=1: analysis=none draws no views and takes no settings; accepted: analysis=default",
    ),
    (
        ["+callbacks.early_stoping.patience=3"],
        "callbacks.early_stoping={'patience': 3}: no _target_: not one of this run's",
    ),
]


@pytest.mark.parametrize(("overrides", "line"), BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_and_exit_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, overrides: list[str], line: str
) -> None:
    status, errors = cli_in_process(monkeypatch, capsys, tmp_path, *TINY, *overrides)
    assert status == 2 and len(errors) == 1, errors
    assert line in errors[0]


def test_a_missing_group_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, errors = cli_in_process(monkeypatch, capsys, tmp_path, "data=synthetic", "trainer=cpu", "~model")
    assert status == 2 and len(errors) == 1, errors
    assert "model=None: required; accepted: alexnet, " in errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_run_on_a_machine_without_one_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, errors = cli_in_process(monkeypatch, capsys, tmp_path, *TINY, "trainer.accelerator=gpu")
    assert status == 2 and len(errors) == 1, errors
    assert "trainer.accelerator='gpu': this machine has no CUDA GPU; accepted: auto, cpu" in errors[0]


def test_paths_in_messages_are_quoted_so_a_newline_cannot_split_the_line() -> None:
    assert quoted("/tmp/a\nb.ckpt") == "'/tmp/a\\nb.ckpt'" and "\n" not in quoted("/tmp/a\nb.ckpt")


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("true",)


def test_a_checkpoint_holding_code_names_the_file_and_what_torch_found(tmp_path: Path) -> None:
    path = tmp_path / "evil\nlast.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{quoted(path)}: refused: torch.load(weights_only=True) found more than tensors")
    assert "GLOBAL posix.system" in message or "GLOBAL os.system" in message
    assert "\n" not in message and "weights_only=False" not in message
    with pytest.raises(DataError) as err:
        read_state_dict(path)
    assert str(err.value).startswith(quoted(path)) and "weights_only=False" not in str(err.value)
    assert "\n" not in str(err.value) and "GLOBAL" in str(err.value)
