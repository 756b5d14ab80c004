"""Every combination of the sweep knobs (depths, strides, activations, BatchNorm, DropConnect) builds the network it names."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from torch import nn

from alexnet_study.errors import ConfigError
from alexnet_study.models import count_parameters

from .conftest import (
    ACTIVATION_TYPES,
    ALL_ACTIVATION_TYPES,
    GEOMETRY,
    INPUT_SIZES,
    PRESETS,
    Step,
    build,
    build_real,
    classifier_layout,
    instantiate_on_meta,
    meta_input,
    modules_of,
    trace,
)

# --- 3. Every combination of the sweep knobs --------------------------------------------------------------

DEPTH_PRESETS = [name for name in PRESETS if name != "alexnet_bn"]  # alexnet_bn has alexnet's geometry
DEPTH_CASES = [(name, c, f) for name in DEPTH_PRESETS for c in range(1, len(GEOMETRY[name]) + 1) for f in range(1, 5)]


@pytest.mark.parametrize(("name", "conv_depth", "fc_depth"), DEPTH_CASES)
def test_conv_depth_and_fc_depth(preset, name: str, conv_depth: int, fc_depth: int) -> None:
    config = preset(name)
    model = build(config, conv_depth=conv_depth, fc_depth=fc_depth)
    geometry = GEOMETRY[name][:conv_depth]
    final_width = GEOMETRY[name][-1].out_channels

    convs = modules_of(model, nn.Conv2d)
    widths = [c.out_channels for c in geometry[:-1]] + [final_width]
    assert [c.out_channels for c in convs] == widths
    assert [c.in_channels for c in convs] == [3, *widths[:-1]]
    # The last kept conv takes the final pool when it has none of its own.
    has_pool = [c.pool_kernel is not None for c in geometry[:-1]] + [True]
    assert len(modules_of(model, nn.MaxPool2d)) == sum(has_pool)

    linears = modules_of(model, nn.Linear)
    hidden = config["hidden"]
    expected_hidden = (hidden + [hidden[-1]] * 4)[: fc_depth - 1]
    assert [m.out_features for m in linears] == [*expected_hidden, 10]
    assert len(modules_of(model, ALL_ACTIVATION_TYPES)) == conv_depth + fc_depth - 1

    names = [f"conv{i}" for i in range(1, conv_depth + 1)] + [f"fc{conv_depth + j}" for j in range(1, fc_depth + 1)]
    assert {k for k in model.layer_paths if k.startswith(("conv", "fc"))} == set(names)
    assert model.get_submodule(model.layer_paths[f"conv{conv_depth}"]) is convs[-1]
    assert model.get_submodule(model.layer_paths[f"fc{conv_depth + fc_depth}"]) is linears[-1]

    assert model(meta_input(INPUT_SIZES[name])).shape == (2, 10)


def test_conv_depth_4_makes_conv4_go_from_384_to_256_with_conv5s_pool(make_cfg) -> None:
    model = instantiate_on_meta(make_cfg("model=alexnet_2012", "data=synthetic", "model.conv_depth=4"))
    conv4 = model.get_submodule(model.layer_paths["conv4"])
    assert (conv4.in_channels, conv4.out_channels, conv4.groups) == (384, 256, 2)
    assert "conv5" not in model.layer_paths
    assert isinstance(model.get_submodule(model.layer_paths["pool4"]), nn.MaxPool2d)
    assert model.layer_paths["fc5"] == "classifier.0"
    assert model.features(meta_input(227)).shape == (2, 256, 6, 6)
    convs = 34_944 + 307_456 + 885_120 + (256 * 192 * 9 + 256)
    fcs = (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert count_parameters(model)[0] == convs + fcs


POOL_STRIDES = list(itertools.product([1, 2, 3], repeat=3))


@pytest.mark.parametrize("input_size", [227, 35])
@pytest.mark.parametrize("pool_strides", POOL_STRIDES, ids=str)
@pytest.mark.parametrize("name", ["alexnet", "alexnet_tflearn"])
def test_pool_strides_build_exactly_when_the_map_does_not_collapse(
    preset, name: str, pool_strides: tuple[int, ...], input_size: int
) -> None:
    config = {**preset(name), "input_size": input_size, "pool_strides": list(pool_strides)}
    steps = trace(GEOMETRY[name], input_size, pool_strides=pool_strides)
    last = steps[-1]
    if last.out < 1:
        with pytest.raises(ConfigError) as err:
            build(config)
        _assert_collapse_message(str(err.value), last, input_size)
        return
    model = build(config)
    assert [m.stride for m in modules_of(model, nn.MaxPool2d)] == list(pool_strides)
    x = meta_input(input_size)
    assert model.features(x).shape == (2, last.out_channels, last.out, last.out)
    assert model(x).shape == (2, 10)


def test_pool_strides_grid_includes_collapses() -> None:
    # Guards the grid above: it must exercise both outcomes, and collapses at different layers.
    ends = [trace(GEOMETRY["alexnet"], size, pool_strides=s)[-1] for size in (227, 35) for s in POOL_STRIDES]
    assert {end.layer for end in ends if end.out < 1} == {"pool2", "pool5"}
    assert any(end.out >= 1 for end in ends)


def _assert_collapse_message(message: str, step: Step, input_size: int) -> None:
    assert f"collapses at {step.layer} " in message
    assert f"input 3x{input_size}x{input_size}" in message
    assert f"reaches {step.channels}x{step.size}x{step.size}" in message
    assert "model.input_size" in message


CONV_STRIDE_CASES = [
    ("alexnet", [4, 1, 1, 1, 1]),
    ("alexnet", [4, 2, 1, 1, 1]),
    ("alexnet", [2, 1, 1, 1, 1]),
    ("alexnet", [4, 1, 2, 1, 2]),
    ("alexnet", [4, 2, 2, 2, 2]),
    ("alexnet_2012", [3, 1, 1, 1, 1]),
    ("alexnet_tflearn", [4, 1, 2, 2, 1]),
    ("alexnet_cifar", [1, 1, 1, 1, 1]),
    ("alexnet_cifar", [2, 1, 1, 1, 1]),
    ("alexnet_cifar", [2, 2, 2, 2, 2]),
    ("convnet", [1, 2, 1]),
]


@pytest.mark.parametrize(("name", "conv_strides"), CONV_STRIDE_CASES, ids=str)
def test_conv_strides(preset, name: str, conv_strides: list[int]) -> None:
    size = INPUT_SIZES[name]
    config = {**preset(name), "conv_strides": conv_strides}
    last = trace(GEOMETRY[name], size, conv_strides=conv_strides)[-1]
    if last.out < 1:
        with pytest.raises(ConfigError) as err:
            build(config)
        _assert_collapse_message(str(err.value), last, size)
        return
    model = build(config)
    assert [c.stride for c in modules_of(model, nn.Conv2d)] == [(s, s) for s in conv_strides]
    x = meta_input(size)
    assert model.features(x).shape == (2, last.out_channels, last.out, last.out)
    assert model(x).shape == (2, 10)


def test_conv_stride_cases_include_collapses() -> None:
    outcomes = {trace(GEOMETRY[n], INPUT_SIZES[n], conv_strides=s)[-1].out < 1 for n, s in CONV_STRIDE_CASES}
    assert outcomes == {True, False}


# Every activation for the convs, with the FC layers following it (null) or set to a different one.
ACTIVATION_NAMES = list(ACTIVATION_TYPES)
OTHER_ACTIVATIONS = ACTIVATION_NAMES[1:] + ACTIVATION_NAMES[:1]
ACTIVATION_CASES = [(a, None) for a in ACTIVATION_NAMES] + list(zip(ACTIVATION_NAMES, OTHER_ACTIVATIONS, strict=True))


@pytest.mark.parametrize(("activation", "fc_activation"), ACTIVATION_CASES)
def test_activations_for_convs_and_fc_layers(preset, activation: str, fc_activation: str | None) -> None:
    torch.manual_seed(0)
    model = build_real(preset("convnet"), activation=activation, fc_activation=fc_activation)
    conv_type = ACTIVATION_TYPES[activation]
    fc_type = ACTIVATION_TYPES[fc_activation or activation]
    assert [type(m) for m in modules_of(model.features, ALL_ACTIVATION_TYPES)] == [conv_type] * 3
    assert [type(m) for m in modules_of(model.classifier, ALL_ACTIVATION_TYPES)] == [fc_type]
    assert type(model.get_submodule(model.layer_paths["act2"])) is conv_type
    # Runs forward and backward (in-place activations must not break autograd).
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.square().sum().backward()
    assert torch.isfinite(model.get_submodule(model.layer_paths["conv1"]).weight.grad).all()


@pytest.mark.parametrize("batchnorm", [True, False])
@pytest.mark.parametrize("name", PRESETS)
def test_batchnorm_knob_puts_batchnorm_after_every_conv_or_none(preset, name: str, batchnorm: bool) -> None:
    model = build(preset(name), batchnorm=batchnorm)
    features = list(model.features)
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    bns = [i for i, m in enumerate(features) if isinstance(m, nn.BatchNorm2d)]
    assert bns == ([i + 1 for i in convs] if batchnorm else [])
    assert all(features[i].num_features == features[i - 1].out_channels for i in bns)
    assert all((features[i].bias is None) == batchnorm for i in convs)
    assert model(meta_input(INPUT_SIZES[name])).shape == (2, 10)


@pytest.mark.parametrize(("name", "expected"), [(n, 2 if n == "alexnet_bn" else 0) for n in PRESETS])
def test_batchnorm_knob_null_keeps_the_preset(preset, name: str, expected: int) -> None:
    assert len(modules_of(build(preset(name), batchnorm=None), nn.BatchNorm2d)) == expected


DROPOUT_CASES = [
    # (preset, knobs, classifier layout); alexnet puts dropout before FC layers, the others after them.
    ("alexnet", {}, ["dropout(0.5)", "linear", "relu", "dropout(0.5)", "linear", "relu", "linear"]),
    (
        "alexnet",
        {"dropout": [0.2, 0.7]},
        ["dropout(0.2)", "linear", "relu", "dropout(0.7)", "linear", "relu", "linear"],
    ),
    ("alexnet", {"dropout": 0.3}, ["dropout(0.3)", "linear", "relu", "dropout(0.3)", "linear", "relu", "linear"]),
    (
        "alexnet_2012",
        {"dropout": [0.2, 0.7]},
        ["linear", "relu", "dropout(0.2)", "linear", "relu", "dropout(0.7)", "linear"],
    ),
    (
        "alexnet",
        {"dropout": [0.1, 0.3], "fc_depth": 4},
        [
            "dropout(0.1)",
            "linear",
            "relu",
            "dropout(0.3)",
            "linear",
            "relu",
            "dropout(0.3)",
            "linear",
            "relu",
            "linear",
        ],
    ),
    ("alexnet_2012", {"dropout": [0.2, 0.7], "fc_depth": 2}, ["linear", "relu", "dropout(0.2)", "linear"]),
    ("alexnet", {"fc_depth": 1}, ["linear"]),
    ("convnet", {"dropout": [0.0]}, ["dropout(0.0)", "linear", "relu", "linear"]),
    (
        "alexnet_tflearn",
        {"dropout": [0.25, 0.0]},
        ["linear", "tanh", "dropout(0.25)", "linear", "tanh", "dropout(0.0)", "linear"],
    ),
]


@pytest.mark.parametrize(("name", "knobs", "layout"), DROPOUT_CASES)
def test_dropout_rates_and_positions(preset, name: str, knobs: dict[str, Any], layout: list[str]) -> None:
    model = build(preset(name), **knobs)
    assert classifier_layout(model) == layout


@pytest.mark.parametrize(
    ("name", "knobs"),
    [(n, {}) for n in PRESETS]
    + [("alexnet", {"dropout": [0.0, 0.3]}), ("alexnet_2012", {"dropout": [0.4, 0.0], "fc_depth": 4})],
)
def test_dropconnect_replaces_dropout_on_the_layer_it_fed(preset, name: str, knobs: dict[str, Any]) -> None:
    plain = build(preset(name), **knobs)
    dropconnect = build(preset(name), dropconnect=True, **knobs)

    # Expected: each Dropout becomes an Identity; the next linear layer drops weights at its rate (if > 0).
    expected, pending = [], 0.0
    for m in classifier_layout(plain):
        if m.startswith("dropout("):
            pending = float(m[8:-1])
            expected.append("identity")
        elif m == "linear":
            expected.append(f"dropconnect({pending})" if pending > 0 else "linear")
            pending = 0.0
        else:
            expected.append(m)
    assert classifier_layout(dropconnect) == expected
    assert any(m.startswith("dropconnect") for m in expected)

    assert not modules_of(dropconnect, nn.Dropout)
    assert dropconnect.layer_paths == plain.layer_paths
    assert list(dropconnect.state_dict()) == list(plain.state_dict())
    assert dropconnect(meta_input(INPUT_SIZES[name])).shape == (2, 10)


def test_dropconnect_via_the_command_line(make_cfg) -> None:
    model = instantiate_on_meta(make_cfg("model=alexnet", "data=synthetic", "model.dropconnect=true"))
    assert classifier_layout(model) == [
        "identity",
        "dropconnect(0.5)",
        "relu",
        "identity",
        "dropconnect(0.5)",
        "relu",
        "linear",
    ]
    assert model.layer_paths["fc6"] == "classifier.1"
    assert model.layer_paths["fc8"] == "classifier.6"
