"""Every preset: exact parameter counts, torchvision compatibility, shapes at its own input size."""

from __future__ import annotations

import math

import hydra
import pytest
import torch
from torch import nn

from alexnet_study.models import count_parameters

# --- 1. Exact parameter counts and torchvision compatibility ----------------------------------------------
from .conftest import (
    FLAT_FEATURES,
    GEOMETRY,
    INPUT_SIZES,
    PRESETS,
    build,
    build_real,
    classifier_layout,
    instantiate_on_meta,
    meta_input,
    modules_of,
    numel,
    trace,
)


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
    assert conv3.std().item() == pytest.approx(math.sqrt(2 / (192 * 9)), rel=0.1)  # N(0, 2/fan_in)
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
