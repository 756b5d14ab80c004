"""scale=laptop: every study composes at both scales, smaller where intended, and every arm still builds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser

from alexnet_study.training.run import build_module

from ..conftest import REPO_ROOT, multirun_in_process

CONF = REPO_ROOT / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("_"))
CIFAR10 = ("conv_depth_sweep", "fc_depth_sweep", "depth_grid", "activation_sweep", "loss_sweep",
           "batchnorm_sweep", "optimizer_sweep")  # fmt: skip


def arms(cfg) -> list[list[str]]:
    """The overrides of every arm the study's sweep launches (one seed: the repeat axis left out)."""
    params = {k: v for k, v in cfg.hydra.sweeper.params.items() if k != "repeat"}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.key_or_group}={value}" for value in o.sweep_string_iterator()] for o in parsed]
    return [list(arm) for arm in itertools.product(*axes)]


def test_every_experiment_has_a_laptop_file() -> None:
    laptop = {p.stem for p in (CONF / "laptop").glob("*.yaml") if not p.stem.startswith("_")}
    assert laptop == set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_laptop_scale_is_smaller_and_full_is_the_recipe(make_cfg, name: str) -> None:
    full, default = make_cfg(f"+experiment={name}", "scale=full"), make_cfg(f"+experiment={name}")
    laptop = make_cfg(f"+experiment={name}", "scale=laptop")
    # scale=full is the default: the same config (the hydra node differs only by the override it records).
    assert all(full[key] == default[key] for key in full if key != "hydra")
    assert full.scale_name == "full" and laptop.scale_name == "laptop"
    assert laptop.task_name == full.task_name and laptop.report.question == full.report.question
    assert laptop.model.input_size < full.model.input_size
    assert laptop.trainer.max_epochs <= full.trainer.max_epochs
    # Each study changes something besides the input that makes it cheaper (or keeps epochs on a small set).
    cheaper = (laptop.trainer.max_epochs < full.trainer.max_epochs, laptop.trainer.get("limit_train_batches"))
    assert any(cheaper) or name == "hymenoptera_finetune"
    if name in CIFAR10:
        assert laptop.model.name == "alexnet_cifar" and laptop.model.avgpool is None
        assert [layer.kernel_size for layer in laptop.model.layers] == [3] * 5
        assert laptop.model.hidden == [1024, 1024] and laptop.data.image_size == 32
    # A step schedule keeps its share of the run: decays after about 2/3 of the epochs, as the recipe does.
    scheduler = full.sched.get("scheduler") or {}
    if "step_size" in scheduler and name != "step_size_sweep":
        share = full.sched.scheduler.step_size / full.trainer.max_epochs
        laptop_share = laptop.sched.scheduler.step_size / laptop.trainer.max_epochs
        assert laptop_share == pytest.approx(share, abs=0.2)


def test_the_swept_step_sizes_scale_with_the_epochs(make_cfg) -> None:
    full = make_cfg("+experiment=step_size_sweep")
    laptop = make_cfg("+experiment=step_size_sweep", "scale=laptop")
    ratio = laptop.trainer.max_epochs / full.trainer.max_epochs
    sizes = [int(s) for s in str(full.hydra.sweeper.params["sched.scheduler.step_size"]).split(",")]
    assert laptop.hydra.sweeper.params["sched.scheduler.step_size"] == ",".join(str(round(s * ratio)) for s in sizes)
    assert laptop.report.baseline == f"sched.scheduler.step_size={round(sizes[0] * ratio)}"


def test_cifar100_arms_keep_their_own_epochs(make_cfg) -> None:
    """The scale comes before the variant there: fine-tuning 5 epochs, from scratch 10, at both scales."""
    for arm, epochs in (("pretrained", 5), ("scratch", 10)):
        cfg = make_cfg("+experiment=cifar100_transfer", "scale=laptop", f"variant/cifar100_transfer={arm}")
        assert cfg.trainer.max_epochs == epochs and cfg.model.input_size == 64


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_arm_builds_at_laptop_scale(make_cfg, name: str) -> None:
    """Each arm's network takes the laptop input (shapes checked on the meta device: no memory, no weights)."""
    study = arms(make_cfg(f"+experiment={name}", "scale=laptop"))
    assert len(study) > 1
    for arm in study:
        cfg = make_cfg(f"+experiment={name}", "scale=laptop", *arm, "model.pretrained=false")
        with torch.device("meta"):
            net = build_module(cfg).net
            size = cfg.data.image_size
            out = net(torch.empty(2, 3, size, size))
        assert out.shape == (2, cfg.data.num_classes), arm


@pytest.mark.slow
def test_a_laptop_study_runs_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """conv_depth_sweep at laptop scale on random CIFAR-sized images, two batches per stage."""
    sweep = multirun_in_process(
        monkeypatch, tmp_path, "+experiment=conv_depth_sweep", "scale=laptop", "data=synthetic",
        "data.train_size=32", "data.val_size=16", "data.test_size=16", "data.batch_size=8", "trainer=smoke",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "trainer.enable_model_summary=false", "~callbacks.dataset_views", "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false", "repeats=1",
    )  # fmt: skip
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    assert len(runs) == 3
    for run in runs:
        assert "name: alexnet_cifar" in (run / ".hydra" / "config.yaml").read_text()
