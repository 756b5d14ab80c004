"""The init schemes: how each fills the conv and FC layers."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from alexnet_study.models import AlexNet
from alexnet_study.models.layers import GAINS, OUTPUT_GAIN

from .conftest import build_real, modules_of

# --- Initialisation ---------------------------------------------------------------------------------------


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = weight[0][0].numel()
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def _weighted_layers(model: AlexNet) -> dict[str, nn.Module]:
    return {k: model.get_submodule(v) for k, v in model.layer_paths.items() if k.startswith(("conv", "fc"))}


INIT_PRESETS = ["alexnet", "alexnet_2012", "alexnet_tflearn"]


def test_alexnet_bn_he_init_starts_every_bias_at_zero(preset) -> None:
    torch.manual_seed(0)
    model = build_real(preset("alexnet_bn"), hidden=[256, 256])
    biases = {name: layer.bias for name, layer in _weighted_layers(model).items() if layer.bias is not None}
    assert sorted(biases) == ["conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert [name for name, bias in biases.items() if bias.abs().sum() > 0] == []


@pytest.mark.parametrize("name", INIT_PRESETS)
@pytest.mark.parametrize("scheme", ["he", "xavier"])
def test_fan_based_inits_have_the_right_scale(preset, name: str, scheme: str) -> None:
    torch.manual_seed(0)
    model = build_real(preset(name), hidden=[256, 256], init=scheme)
    layers = _weighted_layers(model)
    assert len(layers) == 8
    spec = model.spec
    # The fraction of each FC layer's input that dropout keeps: before fc6/fc7 (torchvision) or after (paper).
    dropped = [*spec.dropout, 0.0] if spec.dropout_position == "input" else [0.0, *spec.dropout]
    kept = {f"fc{6 + i}": 1.0 - rate for i, rate in enumerate(dropped)}
    for layer_name, layer in layers.items():
        fan_in, fan_out = _fans(layer.weight)
        if scheme == "he" and layer_name == "fc8":  # the output layer: no ReLU after it, a tenth of linear
            expected_std = OUTPUT_GAIN * math.sqrt(kept["fc8"] / fan_in)
        elif scheme == "he":  # fan_in, with the gain of the activation after the layer
            activation = spec.activation if layer_name.startswith("conv") else spec.fc_activation
            expected_std = GAINS[activation] * math.sqrt(kept.get(layer_name, 1.0) / fan_in)
        else:
            bound = math.sqrt(6 / (fan_in + fan_out))
            expected_std = bound / math.sqrt(3)
            assert layer.weight.abs().max().item() <= bound, layer_name
        assert layer.weight.std().item() == pytest.approx(expected_std, rel=0.1), layer_name
    for layer_name in ("conv1", "conv3", "fc8"):  # layers the paper also starts at 0
        bias = layers[layer_name].bias
        assert torch.equal(bias, torch.zeros_like(bias)), layer_name


@pytest.mark.parametrize("scheme", ["he", "xavier"])
def test_fan_based_inits_start_every_bias_at_zero(preset, scheme: str) -> None:
    model = build_real(preset("alexnet"), hidden=[64, 64], init=scheme)
    nonzero = [name for name, layer in _weighted_layers(model).items() if layer.bias.abs().sum() > 0]
    assert nonzero == []


@pytest.mark.parametrize("name", INIT_PRESETS)
def test_default_init_is_pytorchs(preset, name: str) -> None:
    torch.manual_seed(0)
    config = preset(name)
    config.pop("init")
    model = build_real(config, hidden=[256, 256])
    for layer_name, layer in _weighted_layers(model).items():
        fan_in, _ = _fans(layer.weight)
        bound = 1 / math.sqrt(fan_in)
        assert layer.weight.abs().max().item() <= bound, layer_name
        assert layer.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1), layer_name
        assert layer.bias.abs().max().item() <= bound, layer_name
        assert layer.bias.abs().sum().item() > 0, layer_name


PAPER_CASES = [
    # (preset, knobs, layers whose biases start at 1; every other bias starts at 0)
    ("alexnet_2012", {}, {"conv2", "conv4", "conv5", "fc6", "fc7"}),
    ("alexnet", {"init": "paper"}, {"conv2", "conv4", "conv5", "fc6", "fc7"}),
    ("alexnet", {"init": "paper", "conv_depth": 4}, {"conv2", "conv4", "fc5", "fc6"}),
    ("alexnet", {"init": "paper", "conv_depth": 3, "fc_depth": 4}, {"conv2", "fc4", "fc5", "fc6"}),
    ("alexnet_tflearn", {"init": "paper", "fc_depth": 1}, {"conv2", "conv4", "conv5"}),
]


@pytest.mark.parametrize(("name", "knobs", "bias_one"), PAPER_CASES)
def test_paper_init(preset, name: str, knobs: dict[str, Any], bias_one: set[str]) -> None:
    torch.manual_seed(0)
    model = build_real(preset(name), **{"hidden": [256, 256], **knobs})
    layers = _weighted_layers(model)
    assert bias_one <= set(layers)
    for layer_name, layer in layers.items():
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.1), layer_name
        assert abs(layer.weight.mean().item()) < 1e-3, layer_name
        fill = 1.0 if layer_name in bias_one else 0.0
        assert torch.equal(layer.bias, torch.full_like(layer.bias, fill)), layer_name


def test_paper_init_with_batchnorm_skips_missing_biases(preset) -> None:
    model = build_real(preset("alexnet_2012"), hidden=[64, 64], batchnorm=True)
    assert all(m.bias is None for m in modules_of(model, nn.Conv2d))
    assert [m.bias.unique().tolist() for m in modules_of(model, nn.Linear)] == [[1.0], [1.0], [0.0]]
