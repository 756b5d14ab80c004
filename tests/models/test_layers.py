"""DropConnectLinear and the paper's layer names (layer_paths)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from alexnet_study.models.layers import DropConnectLinear

from .conftest import ALL_ACTIVATION_TYPES, PRESETS, build, build_real, modules_of

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
