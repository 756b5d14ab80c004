"""The GPU code paths, run on the CPU at tiny sizes: bf16 autocast, channels_last, torch.compile and
fused optimizers, with the layers and losses that have their own dtype handling (BCE, DropConnect,
LRN, frozen layers). A first GPU user should meet no dtype, layout or compile error nobody has seen."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from hydra.utils import instantiate

from alexnet_study.training.run import run

# TINY's two conv layers with LRN on the first: LRN computes in its own dtype under autocast.
LRN_LAYERS = (
    "model.layers=[{out_channels:8,kernel_size:3,padding:1,lrn:true,pool:{kernel_size:2,stride:2}},"
    "{out_channels:16,kernel_size:3,padding:1,pool:{kernel_size:2,stride:2}}]"
)
ONE_EPOCH = ("trainer.max_epochs=1", "trainer.precision=bf16-mixed")


def _trains(metrics: dict) -> None:
    assert metrics["status"] == "ok", metrics.get("error")
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    assert metrics["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    "extra",
    [[], ["loss=bce"], ["model.dropconnect=true", "model.dropout=[0.3]"], [LRN_LAYERS], ["model.freeze=until:conv1"]],
    ids=["plain", "bce", "dropconnect", "lrn", "frozen_conv1"],
)
def test_bf16_autocast_on_the_cpu(make_cfg, extra: list[str]) -> None:
    _trains(run(make_cfg(*ONE_EPOCH, *extra, tiny=True)))


def test_channels_last_with_a_fused_optimizer(make_cfg) -> None:
    _trains(run(make_cfg(*ONE_EPOCH, "channels_last=true", "optim.fused=true", tiny=True)))


@pytest.mark.parametrize("optim", ["sgd", "adam", "adamw"])
def test_every_fusable_optimizer_steps_fused(make_cfg, optim: str) -> None:
    cfg = make_cfg(f"optim={optim}", "optim.fused=true", tiny=True)
    net = torch.nn.Linear(4, 2)
    optimizer = instantiate(cfg.optim)(net.parameters())
    assert optimizer.defaults["fused"] is True
    before = net.weight.detach().clone()
    net(torch.randn(8, 4)).square().mean().backward()
    optimizer.step()
    assert not torch.equal(before, net.weight)


@pytest.mark.slow
def test_torch_compile_on_the_cpu_backend(make_cfg) -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's CPU backend needs a C compiler")
    _trains(run(make_cfg(*ONE_EPOCH, "compile=true", "channels_last=true", tiny=True)))
