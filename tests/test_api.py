"""The notebook API: build and inspect models, train in-process, load runs and sweeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import alexnet_study as als
from alexnet_study.errors import ConfigError

from .conftest import TINY, make_job


def test_build_model_from_a_preset_with_overrides() -> None:
    net = als.build_model("alexnet_tflearn", num_classes=17, pool_strides=[3, 3, 2], dropout=[0.4, 0.3])
    assert net.spec.name == "alexnet_tflearn" and net.spec.num_classes == 17
    assert [layer.pool.stride for layer in net.spec.layers if layer.pool] == [3, 3, 2]
    assert net.spec.dropout == (0.4, 0.3)
    with pytest.raises(ConfigError, match=r"model\.activation='swish'"):
        als.build_model("alexnet", activation="swish")


def test_summarize_alexnet() -> None:
    summary = als.summarize(als.build_model("alexnet", num_classes=10))
    shapes = {layer.name: layer.output_shape for layer in summary.layers}
    assert shapes["conv1"] == (1, 64, 56, 56) and shapes["pool5"] == (1, 256, 6, 6) and shapes["fc8"] == (1, 10)
    assert summary.total_params == summary.trainable_params == 57_044_810
    assert sum(layer.params for layer in summary.layers) == summary.total_params
    assert summary.flops == 1_425_424_384  # 2 FLOPs per multiply-add, batch of one at 227
    assert sum(layer.flops for layer in summary.layers) == summary.flops
    text = str(summary)
    assert "conv1" in text and "57,044,810 parameters" in text


def test_summarize_counts_frozen_parameters_and_any_input_size() -> None:
    net = als.build_model("alexnet", num_classes=10, hidden=[64, 64])
    for p in net.features.parameters():
        p.requires_grad_(False)
    summary = als.summarize(net, input_size=128)  # the adaptive pool takes any size
    assert summary.input_shape == (1, 3, 128, 128)
    assert {layer.name: layer.output_shape for layer in summary.layers}["conv1"] == (1, 64, 31, 31)
    assert summary.trainable_params == summary.total_params - sum(p.numel() for p in net.features.parameters())
    assert net.training  # the train/eval mode is restored
    with pytest.raises(ValueError, match="input_size=64"):  # no adaptive pool: the flatten size is fixed
        als.summarize(als.build_model("convnet"), input_size=64)


def test_fit_and_load_run(tmp_path: Path) -> None:
    run = als.fit([*TINY, "trainer.max_epochs=2"], output_dir=tmp_path / "run")
    assert run.metrics["status"] == "ok" and len(run.history) == 2
    again = als.load_run(tmp_path / "run")
    assert again.metrics["test_acc"] == pytest.approx(run.metrics["test_acc"])
    assert again.config["model"]["name"] == "convnet" and again.history == run.history
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").is_file()
    # Again in the same dir with another setting: the finished run's record stays as it was.
    recorded = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    als.fit([*TINY, "trainer.max_epochs=2", "optim.lr=0.5"], output_dir=tmp_path / "run")
    assert (tmp_path / "run" / ".hydra" / "config.yaml").read_text() == recorded


def test_sweep_writes_a_sweep_dir_with_a_report(tmp_path: Path) -> None:
    sweep_dir = als.sweep({"model.activation": ["relu", "tanh"]}, overrides=[*TINY, "trainer.max_epochs=1"],
                          sweep_dir=tmp_path / "sweep")  # fmt: skip
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "curves.png").is_file()
    table = als.load_sweep(sweep_dir)
    assert list(table["model.activation"]) == ["relu", "tanh"]
    assert set(table["status"]) == {"ok"}
    figures = als.sweep_figures(als.report.collect(sweep_dir))
    assert {"curves.png", "bars.png"} <= set(figures)


def test_load_sweep_gives_a_dataframe(tmp_path: Path) -> None:
    make_job(tmp_path, 0, ["seed=1"], best_val_acc=0.5)
    assert isinstance(als.load_sweep(tmp_path), pd.DataFrame)


def test_every_documented_name_imports_in_a_fresh_interpreter() -> None:
    script = "import alexnet_study as als\nfor name in als.__all__: getattr(als, name)\nprint(als.report.write_report)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_package_exports_the_api_lazily() -> None:
    assert callable(als.fit) and callable(als.summarize) and callable(als.build_model)
    assert als.plots.training_curves is not None
    assert isinstance(als.count_parameters(torch.nn.Linear(2, 3)), tuple)
    with pytest.raises(AttributeError):
        als.no_such_thing  # noqa: B018
