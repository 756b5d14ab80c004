"""Every arm of every study learns: its recipe, on a small learnable dataset, lowers the training loss.

Each arm (the experiment's recipe with one combination of its sweeper params) trains a few dozen steps on
synthetic class patterns (``data=synthetic``) at a small input, through the same ImageClassifier, optimizer,
schedule and data transforms as a run. A network that starts with vanishing or exploding activations, or a
recipe whose learning rate cannot move it, keeps the loss where it started and fails here.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning as L
import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import OmegaConf

from alexnet_study.training.run import build_module, instantiate

from ..conftest import REPO_ROOT

STEPS = 24
# The first and last few steps' mean loss: single batches are noisy.
WINDOW = 4
MIN_DROP = 0.10
# The smallest input at which every depth and stride setting of the studies keeps a feature map.
INPUT_SIZE = 67
# Fixed-std inits (tflearn's FC layers, the paper's N(0, 0.01)) depend on the layer widths: those presets
# keep theirs. Fan-scaled inits do not, so the others train with narrow FC layers, in seconds.
FIXED_STD_INITS = ("tflearn", "paper")
NARROW_HIDDEN = 512
SMALL = [
    # 64 images in batches of 16: 6 passes in 24 steps, so even the stride study's lr 0.001 moves the loss
    # clearly (4.9% with 400 images in batches of 8), while a network that cannot learn stays flat.
    "data=synthetic", "data.num_classes=10", "data.stored_size=32", "data.train_size=64", "data.val_size=0",
    "data.test_size=0", "data.batch_size=16", f"model.input_size={INPUT_SIZE}",
    # ImageNet weights cannot be fetched offline: transfer arms start from the preset's own init, with the
    # arm's freezing, learning rates and schedule.
    "model.pretrained=false",
]  # fmt: skip


# Arms that do not lower the loss in this check, and why (xfail, not strict: each is a finding to act on).
NOT_LEARNING = {
    # Eight sigmoid layers pass back a gradient shrunk ~4x at each: the activation study's negative arm.
    ("activation_sweep", "model.activation=sigmoid"): "sigmoid: vanishing gradients, the study's point",
    ("activation_sweep", "model.activation=tanh"): "He's ReLU gain is too large for tanh: loss rises at lr 0.01",
    ("lr_sweep", "optim.lr=0.1"): "lr 0.1 diverges to NaN within three steps",
    # At 67 pixels the stride-3 pools leave a 1x1 or 2x2 map: tflearn's fixed-std FC weights then see a
    # fan-in of 256-1024 and shrink the signal; at the study's 227 the map is 3x3-4x4 (measured: s222 drops).
    ("stride_sweep", "variant/stride=s332_dropout43"): "small map at 67 px with fixed-std FC init",
    ("stride_sweep", "variant/stride=s333_dropout55"): "small map at 67 px with fixed-std FC init",
    ("stride_sweep", "variant/stride=s332_dropconnect43"): "small map at 67 px with fixed-std FC init",
    # He's fan_out init on a 9216-wide flatten into the check's narrow 512 FC layer: a gain of ~6 that the
    # preset's 4096 does not have; the loss rises.
    ("depth_grid", "model.conv_depth=1,model.fc_depth=2"): "narrow FC of this check under fan_out He init",
    ("depth_grid", "model.conv_depth=1,model.fc_depth=3"): "narrow FC of this check under fan_out He init",
    ("depth_grid", "model.conv_depth=3,model.fc_depth=1"): "narrow FC of this check under fan_out He init",
    # Transfer arms start here from random weights (ImageNet weights are offline-only): a frozen random
    # backbone (head only) or VGG-16 from scratch at the fine-tuning lr 1e-3 barely moves in 24 steps.
    ("hymenoptera_finetune", "model.freeze=head"): "random frozen features in place of ImageNet's",
    ("arch_compare", "variant/arch=vgg16"): "VGG-16 from random weights at the fine-tuning lr 1e-3",
}


def experiment_arms() -> list[tuple[str, list[str]]]:
    """(experiment, overrides of one arm) for every combination of every experiment's sweeper params
    (repeats over ``seed`` are one arm)."""
    parser = OverridesParser.create()
    arms = []
    for path in sorted((REPO_ROOT / "conf" / "experiment").glob("[!_]*.yaml")):
        params = OmegaConf.load(path).hydra.sweeper.params
        axes = []
        for key, value in params.items():
            if key == "seed":
                continue
            override = parser.parse_override(f"{key}={value}")
            if isinstance(override.value(), Glob):
                options = sorted(p.stem for p in (REPO_ROOT / "conf" / key.lstrip("+")).glob("*.yaml"))
                values = override.value().filter(options)
            else:
                values = list(override.sweep_string_iterator())
            axes.append([f"{key}={v}" for v in values])
        arms += [(path.stem, list(combo)) for combo in itertools.product(*axes)]
    return arms


class StepLosses(L.Callback):
    """The training loss of every step (read back once per step; fine for a CPU test)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, *_: Any) -> None:
        self.losses.append(float(outputs["loss"]))


def train_losses(cfg: Any) -> list[float]:
    torch.manual_seed(0)
    recorder = StepLosses()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=STEPS, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
    )  # fmt: skip
    trainer.fit(build_module(cfg), datamodule=instantiate(cfg.data))
    return recorder.losses


def arm_config(make_cfg: Any, name: str, arm: list[str]) -> Any:
    # The arm before +experiment, as Hydra's sweeper orders them.
    cfg = make_cfg(*arm, f"+experiment={name}", *SMALL)
    if cfg.model.get("init") not in FIXED_STD_INITS and "hidden" in cfg.model:
        widths = len(cfg.model.hidden)
        cfg = make_cfg(*arm, f"+experiment={name}", *SMALL, f"model.hidden=[{','.join([str(NARROW_HIDDEN)] * widths)}]")
    return cfg


def test_every_study_has_arms() -> None:
    names = {name for name, _ in experiment_arms()}
    assert names == {p.stem for p in (REPO_ROOT / "conf" / "experiment").glob("[!_]*.yaml")}


def _cases() -> list[Any]:
    cases = []
    for name, arm in experiment_arms():
        reason = NOT_LEARNING.get((name, ",".join(arm)))
        cases.append(pytest.param(name, arm, marks=[pytest.mark.xfail(reason=reason, strict=False)] if reason else []))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize(("name", "arm"), _cases(), ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_every_arm_of_every_study_learns(make_cfg, name: str, arm: list[str]) -> None:
    losses = train_losses(arm_config(make_cfg, name, arm))
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert len(losses) == STEPS
    assert last <= (1 - MIN_DROP) * first, f"loss {first:.3f} -> {last:.3f} in {STEPS} steps: {losses}"


@pytest.mark.slow
def test_the_check_fails_the_stride_study_with_pytorchs_default_init(make_cfg) -> None:
    # The init the stride study had before its preset followed tflearn: the loss stays at ln(10).
    cfg = arm_config(make_cfg, "stride_sweep", ["variant/stride=s222_dropout55"])
    cfg.model.init, cfg.model.lrn_constants = "default", "paper"
    losses = train_losses(cfg)
    first, last = sum(losses[:WINDOW]) / WINDOW, sum(losses[-WINDOW:]) / WINDOW
    assert last > (1 - MIN_DROP) * first
