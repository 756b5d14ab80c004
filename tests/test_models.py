"""The AlexNet builder: presets, sweep knobs, shapes, parameter counts, init, DropConnect and config errors.

Big networks are built on the meta device (shapes and parameter counts without memory or compute);
expected feature-map sizes are computed here from the conv formula, independently of the builder.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hydra
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F

from alexnet_study.config.compose import compose
from alexnet_study.errors import ConfigError
from alexnet_study.models import AlexNet, ConvSpec, PoolSpec, build_alexnet, count_parameters, resolve_spec
from alexnet_study.models.layers import DropConnectLinear
from alexnet_study.models.transfer import TRANSFER_KEYS

PRESETS = ["alexnet", "alexnet_2012", "alexnet_bn", "alexnet_tflearn", "alexnet_cifar", "convnet"]
INPUT_SIZES = {
    "alexnet": 227,
    "alexnet_2012": 227,
    "alexnet_bn": 227,
    "alexnet_tflearn": 227,
    "alexnet_cifar": 32,
    "convnet": 32,
}
# Width of the flattened feature map that enters the first FC layer, at the preset's own input size.
FLAT_FEATURES = {
    "alexnet": 256 * 6 * 6,
    "alexnet_2012": 256 * 6 * 6,
    "alexnet_bn": 256 * 6 * 6,
    "alexnet_tflearn": 256 * 8 * 8,
    "alexnet_cifar": 256 * 4 * 4,
    "convnet": 128 * 4 * 4,
}
ACTIVATION_TYPES = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
ALL_ACTIVATION_TYPES = tuple(ACTIVATION_TYPES.values())


@dataclass(frozen=True)
class Conv:
    """The geometry of one conv layer of a preset, written out here to check the builder against."""

    out_channels: int
    kernel: int
    stride: int
    padding: int
    pool_kernel: int | None = None  # max-pool after the conv (stride 2 unless overridden)
    pool_padding: int = 0


GEOMETRY = {
    "alexnet": [
        Conv(64, 11, 4, 2, 3),
        Conv(192, 5, 1, 2, 3),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1),
        Conv(256, 3, 1, 1, 3),
    ],
    "alexnet_2012": [
        Conv(96, 11, 4, 0, 3),
        Conv(256, 5, 1, 2, 3),
        Conv(384, 3, 1, 1),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1, 3),
    ],
    "alexnet_tflearn": [
        Conv(96, 11, 4, 4, 3, 1),
        Conv(256, 5, 1, 2, 3, 1),
        Conv(384, 3, 1, 1),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1, 3, 1),
    ],
    "alexnet_cifar": [
        Conv(64, 3, 1, 1, 2),
        Conv(192, 3, 1, 1, 2),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1),
        Conv(256, 3, 1, 1, 2),
    ],
    "convnet": [Conv(32, 3, 1, 1, 2), Conv(64, 3, 1, 1, 2), Conv(128, 3, 1, 1, 2)],
}
GEOMETRY["alexnet_bn"] = GEOMETRY["alexnet"]


@dataclass(frozen=True)
class Step:
    """A layer the feature map goes through: its name, the map it receives (channels x size x size), its output side."""

    layer: str
    channels: int
    size: int
    out: int
    out_channels: int


def out_side(size: int, kernel: int, stride: int, padding: int) -> int:
    """The conv / max-pool output formula (floor mode), written independently of the package."""
    return (size + 2 * padding - kernel) // stride + 1


def trace(
    geometry: list[Conv], input_size: int, conv_strides: Any = None, pool_strides: Any = None, in_channels: int = 3
) -> list[Step]:
    """The feature map through the conv layers, stopping at the first layer whose output side is < 1."""
    conv_strides = list(conv_strides or [c.stride for c in geometry])
    pool_strides = list(pool_strides or [2 for c in geometry if c.pool_kernel])
    steps: list[Step] = []
    channels, size = in_channels, input_size
    for i, conv in enumerate(geometry, start=1):
        out = out_side(size, conv.kernel, conv_strides[i - 1], conv.padding)
        steps.append(Step(f"conv{i}", channels, size, out, conv.out_channels))
        if out < 1:
            return steps
        channels, size = conv.out_channels, out
        if conv.pool_kernel:
            out = out_side(size, conv.pool_kernel, pool_strides.pop(0), conv.pool_padding)
            steps.append(Step(f"pool{i}", channels, size, out, channels))
            if out < 1:
                return steps
            size = out
    return steps


def with_changes(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with Hydra-style dotted keys set (``layers.0.stride``: list indices allowed)."""
    config = copy.deepcopy(config)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node: Any = config
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return config


def build(config: dict[str, Any], **knobs: Any) -> AlexNet:
    """Build a model config (with sweep knobs) on the meta device: shapes and counts only."""
    with torch.device("meta"):
        return build_alexnet(**{**config, **knobs})


def build_real(config: dict[str, Any], **knobs: Any) -> AlexNet:
    """Build a (small) model config with sweep knobs on the CPU, with real weights."""
    return build_alexnet(**{**config, **knobs})


def instantiate_on_meta(cfg: DictConfig) -> AlexNet:
    """Build ``cfg.model`` as the command line does (Hydra's instantiate), on the meta device."""
    with torch.device("meta"):
        model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, AlexNet)
    return model


def meta_input(size: int, n: int = 2) -> torch.Tensor:
    return torch.empty(n, 3, size, size, device="meta")


def modules_of(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def classifier_layout(model: AlexNet) -> list[str]:
    """The classifier as short names: 'dropout(0.5)', 'linear', 'dropconnect(0.5)', 'relu', 'identity', ..."""
    names = []
    for m in model.classifier:
        if isinstance(m, DropConnectLinear):
            names.append(f"dropconnect({m.p})")
        elif isinstance(m, nn.Linear):
            names.append("linear")
        elif isinstance(m, nn.Dropout):
            names.append(f"dropout({m.p})")
        elif isinstance(m, nn.Identity):
            names.append("identity")
        else:
            names.append(next(k for k, t in ACTIVATION_TYPES.items() if type(m) is t))
    return names


@pytest.fixture(scope="session")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """A preset's model config as the command line composes it (``data=synthetic``: 10 classes), as a dict.

    Composed once per preset; every call returns a fresh copy (without ``_target_``) to modify.
    """
    root = tmp_path_factory.mktemp("presets")
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cfg = compose([f"model={name}", "data=synthetic", f"paths.root_dir={root}"], output_dir=root / "run")
            config = OmegaConf.to_container(cfg.model, resolve=True)
            assert isinstance(config, dict)
            assert config.pop("_target_") == "alexnet_study.models.build_alexnet"
            cache[name] = config
        return copy.deepcopy(cache[name])

    return get


# --- 1. Exact parameter counts and torchvision compatibility ----------------------------------------------


def test_alexnet_with_101_classes_has_the_documented_counts(make_cfg) -> None:
    model = instantiate_on_meta(make_cfg("model=alexnet", "data=synthetic", "data.num_classes=101"))
    assert count_parameters(model) == (57_417_637, 57_417_637)
    assert numel(model.features) == 2_469_696
    assert numel(model.classifier) == 54_947_941
    assert model(meta_input(227)).shape == (2, 101)


def test_alexnet_2012_with_1000_classes_has_the_papers_count(make_cfg) -> None:
    model = instantiate_on_meta(make_cfg("model=alexnet_2012", "data=synthetic", "data.num_classes=1000"))
    assert count_parameters(model) == (60_965_224, 60_965_224)


def test_alexnet_with_1000_classes_is_torchvisions_alexnet(make_cfg) -> None:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ours = hydra.utils.instantiate(make_cfg("model=alexnet", "data=synthetic", "data.num_classes=1000").model)
    reference = torchvision.models.alexnet()
    assert count_parameters(ours) == (61_100_840, 61_100_840)
    assert count_parameters(reference)[0] == 61_100_840

    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 227, 227)
    with torch.no_grad():
        expected = reference(x)
        assert not torch.allclose(ours(x), expected)  # different random weights before loading
        ours.load_state_dict(reference.state_dict(), strict=True)
        torch.testing.assert_close(ours(x), expected)


def test_count_parameters_separates_frozen_parameters(preset) -> None:
    model = build(preset("convnet"))
    total = numel(model)
    model.features.requires_grad_(False)
    assert count_parameters(model) == (total, numel(model.classifier))


# --- 2. Every preset, at its own input size ---------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_builds_and_maps_its_input_to_class_scores(make_cfg, name: str) -> None:
    cfg = make_cfg(f"model={name}", "data=synthetic", "data.num_classes=7")
    size = cfg.model.input_size
    assert size == INPUT_SIZES[name]
    model = instantiate_on_meta(cfg)
    assert model.spec.name == name

    last = trace(GEOMETRY[name], size)[-1]
    x = meta_input(size, n=3)
    assert model.features(x).shape == (3, last.out_channels, last.out, last.out)
    assert model.flat_features == FLAT_FEATURES[name]
    assert modules_of(model.classifier, nn.Linear)[0].in_features == FLAT_FEATURES[name]
    assert model(x).shape == (3, 7)


@pytest.mark.parametrize("name", ["alexnet_cifar", "convnet"])
def test_small_presets_run_on_real_32x32_images(preset, name: str) -> None:
    torch.manual_seed(0)
    model = build_real(preset(name))
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_alexnet_2012_is_the_papers_grouped_network(preset) -> None:
    model = build(preset("alexnet_2012"))
    convs = modules_of(model, nn.Conv2d)
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert convs[0].padding == (0, 0)

    lrns = modules_of(model, nn.LocalResponseNorm)
    assert len(lrns) == 2
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 2.0) for m in lrns)
    # LRN after the activation of conv1 and conv2, before their max-pool.
    features = list(model.features)
    for conv in convs[:2]:
        start = features.index(conv)
        assert [type(m) for m in features[start : start + 4]] == [
            nn.Conv2d,
            nn.ReLU,
            nn.LocalResponseNorm,
            nn.MaxPool2d,
        ]

    assert isinstance(model.avgpool, nn.Identity)
    assert not modules_of(model, nn.AdaptiveAvgPool2d)
    assert model.spec.input_size == 227
    assert model.features(meta_input(227)).shape == (2, 256, 6, 6)
    assert model.flat_features == 9216
    assert classifier_layout(model) == ["linear", "relu", "dropout(0.5)", "linear", "relu", "dropout(0.5)", "linear"]
    assert model.spec.init == "paper"


def test_alexnet_bn_has_batchnorm_after_conv1_and_conv2_only_and_he_init(preset) -> None:
    torch.manual_seed(0)
    model = build_real(preset("alexnet_bn"), hidden=[256, 256])  # small FC layers: built for real, fast
    features = list(model.features)
    bns = [i for i, m in enumerate(features) if isinstance(m, nn.BatchNorm2d)]
    convs = [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]
    assert bns == [convs[0] + 1, convs[1] + 1]
    assert [features[i].num_features for i in bns] == [64, 192]
    # A conv followed by BatchNorm needs no bias.
    assert [features[i].bias is None for i in convs] == [True, True, False, False, False]
    assert model.spec.init == "he"
    conv3 = features[convs[2]].weight
    assert conv3.std().item() == pytest.approx(math.sqrt(2 / (384 * 9)), rel=0.1)
    assert classifier_layout(model) == ["linear", "relu", "dropout(0.5)", "linear", "relu", "dropout(0.5)", "linear"]


def test_alexnet_tflearn_has_lrn_after_each_pool_and_tanh_fc(preset) -> None:
    model = build(preset("alexnet_tflearn"))
    features = list(model.features)
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    lrns = [i for i, m in enumerate(features) if isinstance(m, nn.LocalResponseNorm)]
    assert len(pools) == 3
    assert lrns == [i + 1 for i in pools]
    assert [m.padding for m in modules_of(model, nn.MaxPool2d)] == [1, 1, 1]

    assert len(modules_of(model.features, nn.ReLU)) == 5
    assert not modules_of(model.features, nn.Tanh)
    assert classifier_layout(model) == ["linear", "tanh", "dropout(0.5)", "linear", "tanh", "dropout(0.5)", "linear"]
    assert model.features(meta_input(227)).shape == (2, 256, 8, 8)
    assert model.flat_features == 16384
    assert isinstance(model.avgpool, nn.Identity)


def test_alexnet_cifar_takes_32x32_and_flattens_4x4x256(preset) -> None:
    model = build(preset("alexnet_cifar"))
    assert model.spec.input_size == 32
    assert model.features(meta_input(32)).shape == (2, 256, 4, 4)
    assert [m.out_features for m in modules_of(model, nn.Linear)] == [1024, 1024, 10]


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
    for layer_name, layer in layers.items():
        fan_in, fan_out = _fans(layer.weight)
        if scheme == "he" and layer_name == "fc8":  # the output layer: no ReLU after it, linear gain
            expected_std = math.sqrt(1 / fan_in)
        elif scheme == "he":
            expected_std = math.sqrt(2 / fan_out)
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


# --- 4. The collapse error --------------------------------------------------------------------------------

COLLAPSE_CASES = [
    # (overrides, layer, input, map reached there)
    (["model=alexnet", "model.input_size=32"], "pool5", "3x32x32", "256x1x1"),
    (["model=alexnet", "model.input_size=6"], "conv1", "3x6x6", "3x6x6"),
    (["model=alexnet", "model.input_size=35", "model.pool_strides=[3,3,2]"], "pool2", "3x35x35", "192x2x2"),
    (["model=alexnet_2012", "model.input_size=51", "model.layers.2.padding=0"], "conv3", "3x51x51", "256x2x2"),
    (["model=alexnet_cifar", "model.input_size=4"], "pool5", "3x4x4", "256x1x1"),
    (["model=convnet", "model.input_size=4", "model.conv_strides=[1,2,1]"], "pool2", "3x4x4", "64x1x1"),
]


@pytest.mark.parametrize(("overrides", "layer", "input_shape", "reached"), COLLAPSE_CASES)
def test_collapsing_feature_map_names_layer_input_and_shape(
    make_cfg, overrides: list[str], layer: str, input_shape: str, reached: str
) -> None:
    config = OmegaConf.to_container(make_cfg(*overrides, "data=synthetic").model, resolve=True)
    with pytest.raises(ValueError) as err:
        build(config)
    assert isinstance(err.value, ConfigError)
    message = str(err.value)
    assert f"collapses at {layer} " in message
    assert f"input {input_shape} " in message
    assert f"reaches {reached} " in message


def test_command_line_model_build_raises_the_config_error_itself(make_cfg) -> None:
    # Hydra wraps what a target raises; the entry point only prints StudyErrors as one line.
    from alexnet_study.training.run import build_module

    with pytest.raises(ConfigError, match="collapses at pool5"):
        build_module(make_cfg("model=alexnet", "data=synthetic", "model.input_size=32"))


# --- 5. Config errors name the key, the value and what is accepted ----------------------------------------

CONFIG_ERRORS = [
    (
        {"activation": "swish"},
        ["model.activation='swish'", "accepted", "relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"],
    ),
    ({"fc_activation": "swish"}, ["model.fc_activation='swish'", "accepted", "relu, leaky_relu"]),
    ({"dropout": [1.0, 0.5]}, ["model.dropout[0]=1.0", "[0, 1)"]),
    ({"dropout": [0.5, -0.1]}, ["model.dropout[1]=-0.1", "[0, 1)"]),
    ({"dropout": 1.0}, ["model.dropout[0]=1.0", "[0, 1)"]),
    ({"dropout": [0.5]}, ["model.dropout=[0.5]", "1 rates for 2 hidden FC layers"]),
    ({"dropout_position": "middle"}, ["model.dropout_position='middle'", "input, output"]),
    ({"pool_strides": [2, 2]}, ["model.pool_strides=[2, 2]", "2 strides for 3 max-pool layers"]),
    ({"pool_strides": [2, 2, 2, 2]}, ["model.pool_strides=[2, 2, 2, 2]", "4 strides for 3 max-pool layers"]),
    ({"pool_strides": [2, 0, 2]}, ["model.pool_strides[1]=0", ">= 1"]),
    ({"pool_strides": 2}, ["model.pool_strides=2", "must be a list"]),
    ({"conv_strides": [4, 1, 0, 1, 1]}, ["model.conv_strides[2]=0", ">= 1"]),
    ({"conv_strides": [4, 1]}, ["model.conv_strides=[4, 1]", "2 strides for 5 conv layers"]),
    ({"layers.0.stride": 0}, ["model.layers[0].stride=0", ">= 1"]),
    ({"layers.1.kernel_size": 0}, ["model.layers[1].kernel_size=0", ">= 1"]),
    ({"layers.2.out_channels": 0}, ["model.layers[2].out_channels=0", ">= 1"]),
    ({"layers.2.padding": -1}, ["model.layers[2].padding=-1", ">= 0"]),
    ({"layers.0.pool.kernel_size": 0}, ["model.layers[0].pool.kernel_size=0", ">= 1"]),
    ({"layers.0.pool.stride": 0}, ["model.layers[0].pool.stride=0", ">= 1"]),
    ({"layers.0.pool.padding": 2}, ["model.layers[0].pool.padding=2", "at most half the kernel (1)"]),
    ({"layers.1.groups": 5}, ["model.layers[1].groups=5", "(64)", "(192)"]),
    ({"layers.0.groups": 2}, ["model.layers[0].groups=2", "(3)", "(64)"]),
    ({"layers.0.dilation": 2}, ["model.layers[0]", "'dilation'", "accepted", "kernel_size", "out_channels"]),
    (
        {"layers.0.pool.ceil_mode": True},
        ["model.layers[0].pool", "'ceil_mode'", "accepted: kernel_size, stride, padding"],
    ),
    ({"layers.1": {"out_channels": 192}}, ["model.layers[1]", "kernel_size are required"]),
    ({"layers": []}, ["model.layers", "at least one conv layer"]),
    ({"conv_depth": 0}, ["model.conv_depth=0", "accepted: 1..5"]),
    ({"conv_depth": 6}, ["model.conv_depth=6", "accepted: 1..5"]),
    ({"fc_depth": 0}, ["model.fc_depth=0", "accepted: 1..4"]),
    ({"dropout": [0.5, 1.0], "fc_depth": 2}, ["model.dropout[1]=1.0", "[0, 1)"]),
    ({"fc_depth": 5}, ["model.fc_depth=5", "accepted: 1..4"]),
    ({"hidden": [], "dropout": [], "fc_depth": 3}, ["model.fc_depth=3", "model.hidden is empty"]),
    ({"hidden": [4096, 0]}, ["model.hidden[1]=0", ">= 1"]),
    ({"batchnorm": "yes"}, ["model.batchnorm='yes'", "true, false"]),
    ({"init": "orthogonal"}, ["model.init='orthogonal'", "default, he, xavier, paper, tflearn"]),
    ({"avgpool": 0}, ["model.avgpool=0", ">= 1"]),
    ({"num_classes": 1}, ["model.num_classes=1", ">= 2"]),
    ({"input_size": 0}, ["model.input_size=0", "in 1..1024"]),
    ({"in_channels": 0}, ["model.in_channels=0", ">= 1"]),
]


@pytest.mark.parametrize(("changes", "fragments"), CONFIG_ERRORS, ids=[str(c) for c, _ in CONFIG_ERRORS])
def test_config_errors_name_key_value_and_what_is_accepted(
    preset, changes: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ValueError) as err:
        build(with_changes(preset("alexnet"), changes))
    assert isinstance(err.value, ConfigError)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["model.activation=swish"], ["model.activation='swish'", "relu"]),
        (["model.pool_strides=[2,2]"], ["model.pool_strides", "3 max-pool"]),
        (["model.layers.0.kernel_size=0"], ["model.layers[0].kernel_size=0"]),
        (["+model.layers.0.dilation=2"], ["model.layers[0]", "dilation"]),
        (["model.conv_depth=6"], ["model.conv_depth=6", "1..5"]),
    ],
)
def test_config_errors_from_command_line_overrides(make_cfg, overrides: list[str], fragments: list[str]) -> None:
    config = OmegaConf.to_container(make_cfg("model=alexnet", "data=synthetic", *overrides).model, resolve=True)
    with pytest.raises(ConfigError) as err:
        build(config)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_groups_checked_after_conv_depth_changes_the_width(preset) -> None:
    # conv3 is cut to the final width 256 with conv_depth=3: groups=3 divides 384 but not 256.
    config = with_changes(preset("alexnet"), {"layers.2.groups": 3})
    with pytest.raises(ConfigError, match=r"model\.layers\[2\]\.groups=3"):
        build(config, conv_depth=3)


# --- 6. DropConnectLinear ---------------------------------------------------------------------------------


def test_dropconnect_in_eval_mode_is_a_plain_linear_layer() -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(16, 8, p=0.5).eval()
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_dropconnect_in_training_is_random_and_unbiased() -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(16, 8, p=0.5)
    x = torch.randn(1, 16)
    expected = F.linear(x, layer.weight, layer.bias)
    layer.train()
    with torch.no_grad():
        draws = torch.stack([layer(x) for _ in range(4000)])
    assert not torch.allclose(draws[0], expected)
    assert not torch.allclose(draws[0], draws[1])
    # The mean over many masks is the eval output, within 5 standard errors per unit.
    standard_error = draws.std(dim=0) / math.sqrt(len(draws))
    assert ((draws.mean(dim=0) - expected).abs() <= 5 * standard_error + 1e-6).all()
    # Without the 1 / (1 - p) scaling the mean would be about half of the weight term: clearly out of bounds.
    assert (5 * standard_error < 0.5 * (expected - layer.bias).abs()).any()


def test_dropconnect_drops_weights_with_one_mask_per_batch() -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(32, 4, bias=False, p=0.5)
    x = torch.randn(1, 32).expand(6, 32)
    out = layer(x)
    assert torch.equal(out, out[:1].expand_as(out))
    # Dropped weights get no gradient; the kept ones get it scaled by 1 / (1 - p).
    layer(torch.ones(1, 32)).sum().backward()
    grad = layer.weight.grad
    assert set(grad.unique().tolist()) <= {0.0, 2.0}
    assert 0.3 < (grad == 0).float().mean().item() < 0.7


def test_dropconnect_with_p_zero_is_linear_in_training() -> None:
    torch.manual_seed(0)
    layer = DropConnectLinear(16, 8, p=0.0).train()
    reference = nn.Linear(16, 8)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), reference(x))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropconnect_rejects_probabilities_outside_0_1(p: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropConnectLinear(4, 4, p=p)


def test_dropconnect_layers_in_a_model_follow_train_and_eval(preset) -> None:
    torch.manual_seed(0)
    model = build_real(preset("convnet"), dropconnect=True, dropout=[0.5])
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.allclose(model(x), model(x))


# --- 7. layer_paths ----------------------------------------------------------------------------------------

ALEXNET_PATHS = {
    "conv1": "features.0", "act1": "features.1", "pool1": "features.2",
    "conv2": "features.3", "act2": "features.4", "pool2": "features.5",
    "conv3": "features.6", "act3": "features.7",
    "conv4": "features.8", "act4": "features.9",
    "conv5": "features.10", "act5": "features.11", "pool5": "features.12",
    "drop6": "classifier.0", "fc6": "classifier.1", "act6": "classifier.2",
    "drop7": "classifier.3", "fc7": "classifier.4", "act7": "classifier.5", "fc8": "classifier.6",
}  # fmt: skip
ALEXNET_2012_PATHS = {
    "conv1": "features.0", "act1": "features.1", "lrn1": "features.2", "pool1": "features.3",
    "conv2": "features.4", "act2": "features.5", "lrn2": "features.6", "pool2": "features.7",
    "conv3": "features.8", "act3": "features.9",
    "conv4": "features.10", "act4": "features.11",
    "conv5": "features.12", "act5": "features.13", "pool5": "features.14",
    "fc6": "classifier.0", "act6": "classifier.1", "drop6": "classifier.2",
    "fc7": "classifier.3", "act7": "classifier.4", "drop7": "classifier.5", "fc8": "classifier.6",
}  # fmt: skip


@pytest.mark.parametrize(("name", "paths"), [("alexnet", ALEXNET_PATHS), ("alexnet_2012", ALEXNET_2012_PATHS)])
def test_layer_paths_are_the_documented_ones(preset, name: str, paths: dict[str, str]) -> None:
    assert build(preset(name)).layer_paths == paths


LAYER_KINDS = {
    "conv": nn.Conv2d,
    "bn": nn.BatchNorm2d,
    "act": ALL_ACTIVATION_TYPES,
    "lrn": nn.LocalResponseNorm,
    "pool": nn.MaxPool2d,
    "fc": nn.Linear,
    "drop": (nn.Dropout, nn.Identity),  # an Identity holds a dropout slot under DropConnect
}


@pytest.mark.parametrize(
    "knobs", [{}, {"batchnorm": True, "fc_depth": 4}, {"conv_depth": 2, "dropconnect": True}], ids=str
)
@pytest.mark.parametrize("name", PRESETS)
def test_layer_paths_point_at_modules_of_their_kind(preset, name: str, knobs: dict[str, Any]) -> None:
    model = build(preset(name), **knobs)
    paths = model.layer_paths
    assert len(set(paths.values())) == len(paths)
    for layer_name, path in paths.items():
        kind = layer_name.rstrip("0123456789")
        assert isinstance(model.get_submodule(path), LAYER_KINDS[kind]), (layer_name, path)
    # Every conv, linear, norm and pool module has a paper name.
    named = {id(model.get_submodule(p)) for p in paths.values()}
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.LocalResponseNorm, nn.MaxPool2d, nn.Linear)
    assert all(id(m) in named for m in modules_of(model, kinds))
    assert all(id(m) in named for m in modules_of(model.features, ALL_ACTIVATION_TYPES))
    # In the network's order: conv1 < ... < convN in features, then fc layers in the classifier.
    convs = sorted((k for k in paths if k.startswith("conv")), key=lambda k: int(k[4:]))
    assert [int(paths[k].split(".")[1]) for k in convs] == sorted(int(paths[k].split(".")[1]) for k in convs)
    first_fc = len(convs) + 1
    fcs = [f"fc{first_fc + j}" for j in range(len(modules_of(model, nn.Linear)))]
    assert [model.get_submodule(paths[k]) for k in fcs] == modules_of(model.classifier, nn.Linear)


@pytest.mark.parametrize("lrn_after_pool", [False, True])
def test_lrn_goes_right_before_or_right_after_the_pool(preset, lrn_after_pool: bool) -> None:
    paths = build(preset("alexnet_tflearn"), lrn_after_pool=lrn_after_pool).layer_paths
    for i in (1, 2, 5):
        lrn, pool = (int(paths[f"{kind}{i}"].split(".")[1]) for kind in ("lrn", "pool"))
        assert lrn == (pool + 1 if lrn_after_pool else pool - 1)


# --- resolve_spec and AlexNet(spec) directly ------------------------------------------------------------------

ALEXNET_LAYERS = [
    {"out_channels": 64, "kernel_size": 11, "stride": 4, "padding": 2, "pool": {"kernel_size": 3, "stride": 2}},
    {"out_channels": 192, "kernel_size": 5, "padding": 2, "pool": {"kernel_size": 3, "stride": 2}},
    {"out_channels": 384, "kernel_size": 3, "padding": 1},
    {"out_channels": 256, "kernel_size": 3, "padding": 1},
    {"out_channels": 256, "kernel_size": 3, "padding": 1, "pool": {"kernel_size": 3, "stride": 2}},
]


def test_resolve_spec_defaults_are_torchvisions_alexnet() -> None:
    spec = resolve_spec(layers=ALEXNET_LAYERS)
    assert spec.layers[0] == ConvSpec(64, 11, stride=4, padding=2, pool=PoolSpec(3, 2))
    assert spec.layers[2] == ConvSpec(384, 3, padding=1)
    assert (spec.hidden, spec.dropout, spec.dropout_position) == ((4096, 4096), (0.5, 0.5), "input")
    assert (spec.avgpool, spec.activation, spec.fc_activation, spec.init) == (6, "relu", "relu", "default")
    assert (spec.num_classes, spec.input_size) == (1000, 227)
    with torch.device("meta"):
        model = AlexNet(spec)
    assert model.spec is spec
    assert count_parameters(model)[0] == 61_100_840


def test_resolve_spec_applies_the_knobs_to_the_layers() -> None:
    spec = resolve_spec(
        layers=ALEXNET_LAYERS, conv_depth=3, conv_strides=[2, 1, 1], pool_strides=[3, 3, 1], batchnorm=True, fc_depth=4
    )
    assert spec.layers == (
        ConvSpec(64, 11, stride=2, padding=2, batchnorm=True, pool=PoolSpec(3, 3)),
        ConvSpec(192, 5, padding=2, batchnorm=True, pool=PoolSpec(3, 3)),
        ConvSpec(256, 3, padding=1, batchnorm=True, pool=PoolSpec(3, 1)),  # conv3 takes conv5's width and pool
    )
    assert (spec.hidden, spec.dropout) == ((4096, 4096, 4096), (0.5, 0.5, 0.5))


def test_resolve_spec_keeps_unknown_keys_in_extra_but_not_hydras() -> None:
    assert resolve_spec(layers=ALEXNET_LAYERS, _target_="x", note="kept").extra == {"note": "kept"}


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_key_is_a_spec_argument(preset, name: str) -> None:
    # A misspelt key in conf/model/*.yaml would land in extra instead of changing the model.
    config = {k: v for k, v in preset(name).items() if k not in TRANSFER_KEYS}  # build_alexnet takes those
    assert resolve_spec(**config).extra == {}
