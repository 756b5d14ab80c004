"""The throughput benchmark runs and reports what it should (never timed here)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from alexnet_study.bench import cli, device, lightning_loop, pipelines

ROW_KEYS = {
    "model", "pipeline", "batch_size", "image_size", "images_per_s", "window_images_per_s", "step_ms",
    "package_speedup", "ratio_to_package", "tflops", "mfu", "peak_memory_mib", "host_syncs_per_step",
    "precision", "channels_last", "fused_optimizer", "compiled", "data", "final_loss",
}  # fmt: skip


def test_quick_cpu_run_reports_the_three_pipelines(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # alexnet's 57M parameters; CI's two cores are shared with the workers
    out = tmp_path / "bench.json"
    cli.main(["--device", "cpu", "--quick", "--pipelines", "package,standard,naive", "--json", str(out)])

    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["peak_tflops"] is None
    model = report["models"]["alexnet"]
    assert model["parameters"] == 57_044_810 and model["image_size"] == 64
    assert model["train_gflops_per_image"] == pytest.approx(3 * model["forward_gflops_per_image"])
    rows = {row["pipeline"]: row for row in report["results"]}
    assert list(rows) == ["package", "standard", "naive"]
    for name, row in rows.items():
        assert set(row) >= ROW_KEYS, (name, ROW_KEYS - set(row))
        assert row["model"] == "alexnet" and row["batch_size"] == 8 and row["image_size"] == 64
        assert row["images_per_s"] > 0 and row["tflops"] > 0 and math.isfinite(row["final_loss"])
        assert row["mfu"] is None and row["peak_memory_mib"] is None and row["host_syncs_per_step"] is None
    assert rows["package"]["package_speedup"] == 1.0
    assert rows["package"]["resident_dataset_mib"] == pytest.approx(64 * 3 * 32 * 32 / 2**20)
    assert rows["standard"]["num_workers"] == os.cpu_count() and rows["naive"]["num_workers"] == 2
    assert rows["standard"]["precision"] == rows["package"]["precision"] == "fp32"  # CPU: no autocast
    assert not rows["standard"]["channels_last"] and not rows["naive"]["fused_optimizer"]


@pytest.mark.slow
def test_options_run_without_hydra_or_omegaconf(tmp_path: Path) -> None:
    """The GPU image has neither: the plain loops must not import them (blocked here)."""
    out, profile = tmp_path / "bench.json", tmp_path / "profile.txt"
    code = (
        "import sys, runpy; sys.modules.update(hydra=None, omegaconf=None); sys.argv[0] = 'bench'; "
        "runpy.run_module('alexnet_study.bench', run_name='__main__', alter_sys=True)"
    )
    command = "--device cpu --quick --models convnet --image-size 32 --pipelines package,model_only"
    command += " --pad-channels --batch-sizes 4,128 --peak-tflops 1"
    args = [*command.split(), "--profile", str(profile), "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "package is" in result.stdout  # the table

    report = json.loads(out.read_text())
    assert [row["pipeline"] for row in report["results"]] == ["package", "package_pad4", "model_only"]
    padded = report["results"][1]
    assert padded["in_channels"] == 4 and padded["images_per_s"] > 0 and padded["package_speedup"] > 0
    small, too_large = report["batch_sizes"]  # a failing configuration is a row saying why; the rest go on
    assert small["batch_size"] == 4 and small["images_per_s"] > 0 and "error" not in small
    assert too_large["batch_size"] == 128 and "larger than --dataset-size 64" in too_large["error"]
    assert all(row["mfu"] == pytest.approx(row["tflops"]) for row in report["results"])  # peak 1 TFLOP/s
    assert "convnet package batch 8 at 32 on cpu" in profile.read_text()


@pytest.mark.parametrize("name", ["alexnet", "alexnet_2012", "alexnet_cifar"])
def test_presets_read_without_hydra_are_the_composed_ones(make_cfg, name: str) -> None:
    cfg = make_cfg(f"model={name}")
    composed = OmegaConf.to_container(cfg.model, resolve=True)
    composed.pop("_target_")
    assert pipelines.model_config(name) == composed
    optim = OmegaConf.to_container(cfg.optim)
    assert pipelines.sgd_config() == {k: v for k, v in optim.items() if not k.startswith("_") and k != "fused"}


def test_known_peaks_and_sweep_commands() -> None:
    assert device.known_peak("NVIDIA H100 80GB HBM3") == ("H100", 989.0)
    assert device.known_peak("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert device.known_peak("NVIDIA H200") == ("H200", 989.0)
    assert device.known_peak("NVIDIA A100-SXM4-80GB") == ("A100", 312.0)
    assert device.known_peak("Some GPU") is None

    commands = lightning_loop.sweep_commands("activation_sweep", ["data=synthetic", "epochs=3"])
    assert commands["sequential"][1:] == [
        "-m",
        "alexnet_study",
        "+experiment=activation_sweep",
        "data=synthetic",
        "epochs=3",
        "-m",
    ]
    assert commands["parallel"][-2:] == ["hydra/launcher=parallel", "-m"]


def test_quick_lightning_loop_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--quick", "--models", "convnet", "--image-size", "32", "--pipelines", "package"]
    cli.main([*args, "--trainer", "--work-dir", str(tmp_path / "work"), "--json", str(out)])
    (row,) = json.loads(out.read_text())["trainer"]
    assert row["pipeline"] == "lightning" and row["status"] == "ok" and row["epochs"] == 2
    assert row["images_per_s"] > 0 and row["package_speedup"] > 0
    assert (tmp_path / "work" / "trainer" / "convnet_8" / "metrics.json").is_file()


def test_sync_counter_counts_whole_steady_state_steps(monkeypatch) -> None:
    """The Lightning callback's windows, with torch's sync warning raised by hand (no GPU here)."""
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(lightning_loop.SyncCounter, "last", None)
    counter = lightning_loop.SyncCounter()
    trainer = SimpleNamespace(current_epoch=0, num_training_batches=5)
    module = SimpleNamespace(device=torch.device("cuda"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(3):
            trainer.current_epoch = epoch
            for batch in range(5):
                counter.on_train_batch_start(trainer, module, None, batch)
                warnings.warn("called a synchronizing CUDA operation", stacklevel=1)  # one per step
                warnings.warn("not a sync", stacklevel=1)
            counter.on_train_epoch_end(trainer, module)
    # epochs 1 and 2, batches 1..3 of each (the first and last batch synchronize on purpose)
    assert lightning_loop.SyncCounter.last is not None
    assert lightning_loop.SyncCounter.last["steps"] == 6 and lightning_loop.SyncCounter.last["syncs"] == 6
    assert (
        lightning_loop.SyncCounter.last["syncs_per_step"] == 1.0 and len(lightning_loop.SyncCounter.last["sites"]) == 1
    )
