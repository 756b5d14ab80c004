"""Every AlexNet preset starts as its source initialised it, with activations that neither vanish nor explode."""

from __future__ import annotations

import math

import hydra
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from alexnet_study.models.builder import AlexNet
from alexnet_study.models.layers import LRN_CONSTANTS, OUTPUT_GAIN, truncated_normal_

# Each preset at its own input size and at a small one it allows (the 227 presets down to 67, the smallest
# input every depth and stride setting of the studies keeps a feature map at; the 32 presets down to 16).
SIZES = {
    "alexnet": (227, 67),
    "alexnet_2012": (227, 67),
    "alexnet_bn": (227, 67),
    "alexnet_tflearn": (227, 67),
    "alexnet_cifar": (32, 16),
    "convnet": (32, 16),
}
CASES = [(name, size) for name, sizes in SIZES.items() for size in sizes]

# Bounds on the std of the logits at initialisation. Above 3 the softmax starts saturated: the loss starts
# several nats above ln(classes) and the gradient reaches mostly one class. Below 0.05 the signal has shrunk
# by more than 20x on its way from the (unit-std) input: the gradient the lower layers get is scaled down by
# the same factors, which is how tflearn's AlexNet at lr 0.001 stayed at chance with PyTorch's default init
# (logits std 0.01 at 227; it could not fit one fixed batch of 16 images in 25 steps).
LOGITS_STD = (0.05, 3.0)
# Every hidden layer's output (after its activation): the same reasoning, with room for the ReLU halving
# the second moment at each layer and the pools and LRNs in between.
HIDDEN_STD = (0.02, 10.0)


def smooth_images(n: int, size: int) -> torch.Tensor:
    """Normalized images with the spatial correlation of photos: upsampled coarse noise plus fine noise,
    scaled to zero mean and unit std (what ImageNet normalization makes of natural images)."""
    generator = torch.Generator().manual_seed(0)
    coarse = F.interpolate(torch.randn(n, 3, 8, 8, generator=generator), size=size, mode="bilinear")
    x = coarse + 0.3 * torch.randn(n, 3, size, size, generator=generator)
    return (x - x.mean()) / x.std()


def activation_stds(model: AlexNet, x: torch.Tensor) -> tuple[dict[str, float], float]:
    """The std of every hidden layer's activation output (``actN``), and of the logits, for input ``x``."""
    stds: dict[str, float] = {}
    handles = [
        model.get_submodule(path).register_forward_hook(
            lambda _module, _inputs, out, name=name: stds.__setitem__(name, out.std().item())
        )
        for name, path in model.layer_paths.items()
        if name.startswith("act")
    ]
    try:
        with torch.no_grad():
            logits = model.eval()(x)
    finally:
        for handle in handles:
            handle.remove()
    return stds, logits.std().item()


@pytest.mark.parametrize(("name", "size"), CASES)
def test_every_preset_starts_with_activations_that_neither_vanish_nor_explode(make_cfg, name: str, size: int) -> None:
    cfg = make_cfg(f"model={name}", f"model.input_size={size}", "data=synthetic", "data.num_classes=17")
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    stds, logits_std = activation_stds(model, smooth_images(4, size))
    low, high = HIDDEN_STD
    assert all(low <= s <= high for s in stds.values()), {k: round(v, 4) for k, v in stds.items()}
    assert LOGITS_STD[0] <= logits_std <= LOGITS_STD[1], (logits_std, {k: round(v, 4) for k, v in stds.items()})


def test_pytorchs_default_init_in_the_tflearn_network_is_what_vanished(make_cfg) -> None:
    # The bounds above reject the init that kept the stride study at chance.
    cfg = make_cfg("model=alexnet_tflearn", "model.input_size=67", "model.init=default", "data=synthetic")
    torch.manual_seed(0)
    _, logits_std = activation_stds(hydra.utils.instantiate(cfg.model), smooth_images(4, 67))
    assert logits_std < LOGITS_STD[0]


def _weighted(model: AlexNet) -> dict[str, nn.Module]:
    return {k: model.get_submodule(v) for k, v in model.layer_paths.items() if k.startswith(("conv", "fc"))}


def test_tflearn_init_is_tflearns_layer_defaults(make_cfg) -> None:
    cfg = make_cfg("model=alexnet_tflearn", "model.input_size=67", "model.hidden=[512,512]", "data=synthetic")
    torch.manual_seed(0)
    layers = _weighted(hydra.utils.instantiate(cfg.model))
    for name, layer in layers.items():
        weight = layer.weight
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias)), name
        if isinstance(layer, nn.Conv2d):  # uniform_scaling: U(+-sqrt(3 / fan_in)), variance 1 / fan_in
            bound = math.sqrt(3 / weight[0].numel())
            assert weight.abs().max().item() <= bound, name
            assert weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
        else:  # truncated_normal(stddev=0.02): cut at two stddevs, std 0.02 * 0.8796
            assert weight.abs().max().item() <= 0.04, name
            assert weight.std().item() == pytest.approx(0.02 * 0.8796, rel=0.05), name
    assert [k for k in layers if k.startswith("fc")] == ["fc6", "fc7", "fc8"]


def test_truncated_normal_redraws_beyond_two_stddevs() -> None:
    torch.manual_seed(0)
    weight = torch.empty(400, 500)
    truncated_normal_(weight, std=0.5)
    assert weight.abs().max().item() <= 1.0
    # A normal cut at +-2 sigma has std 0.8796 sigma and keeps a normal's shape inside the cut.
    assert weight.std().item() == pytest.approx(0.5 * 0.8796, rel=0.02)
    assert (weight.abs() < 0.5).float().mean().item() == pytest.approx(0.6827 / 0.9545, abs=0.01)


def test_tflearn_lrn_is_tf_nn_lrn_with_its_defaults(make_cfg) -> None:
    cfg = make_cfg("model=alexnet_tflearn", "model.input_size=67", "model.hidden=[8,8]", "data=synthetic")
    lrn = next(m for m in hydra.utils.instantiate(cfg.model).modules() if isinstance(m, nn.LocalResponseNorm))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (11, pytest.approx(11e-4), 0.75, 1.0)
    # tf.nn.lrn(depth_radius=5, bias=1, alpha=1e-4, beta=0.75): x / (1 + 1e-4 * sum of x^2 over c-5..c+5)^0.75.
    x = torch.randn(2, 16, 3, 3) * 30
    squares = F.pad(x.pow(2), (0, 0, 0, 0, 5, 5))
    window = torch.stack([squares[:, c : c + 11].sum(1) for c in range(16)], dim=1)
    torch.testing.assert_close(lrn(x), x / (1 + 1e-4 * window).pow(0.75))


def test_the_paper_lrn_keeps_its_constants(make_cfg) -> None:
    cfg = make_cfg("model=alexnet_2012", "model.input_size=67", "model.hidden=[8,8]", "data=synthetic")
    lrn = next(m for m in hydra.utils.instantiate(cfg.model).modules() if isinstance(m, nn.LocalResponseNorm))
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert set(LRN_CONSTANTS) == {"paper", "tflearn"}


def test_an_unknown_lrn_constants_name_is_refused_with_the_accepted_ones(make_cfg) -> None:
    from alexnet_study.errors import ConfigError
    from alexnet_study.training.run import instantiate

    cfg = make_cfg("model=alexnet_tflearn", "model.lrn_constants=caffe", "data=synthetic")
    with pytest.raises(ConfigError, match=r"model.lrn_constants='caffe': unknown; accepted: paper, tflearn"):
        instantiate(cfg.model)


@pytest.mark.parametrize("classes", [2, 17, 101])
def test_he_init_starts_the_output_layer_at_a_tenth_of_the_linear_gain(make_cfg, classes: int) -> None:
    # N(0, 2/fan_out) on a head with fan_out = the class count would start the logits at a std of ~10; the
    # linear gain itself started them at 3-10 (see OUTPUT_GAIN).
    cfg = make_cfg(
        "model=alexnet_bn",
        "model.input_size=67",
        "model.hidden=[512,512]",
        "data=synthetic",
        f"data.num_classes={classes}",
    )
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    # alexnet_bn drops fc7's output at 0.5: the head's input has twice the second moment in training.
    head = _weighted(model)["fc8"].weight
    assert head.std().item() == pytest.approx(OUTPUT_GAIN * math.sqrt(0.5 / head.shape[1]), rel=0.1)
    # The hidden FC layers: N(0, 2/fan_in) (fc6 reads the 9216-wide flatten into 512; no dropout before it).
    hidden = _weighted(model)["fc6"].weight
    assert hidden.std().item() == pytest.approx(math.sqrt(2 / hidden.shape[1]), rel=0.1)


@pytest.mark.parametrize("dropconnect", [False, True])
def test_he_init_makes_up_for_the_dropout_on_each_fc_layers_input(make_cfg, dropconnect: bool) -> None:
    # torchvision's layout drops each hidden FC layer's input (or, with DropConnect, its weights) at 0.3 here:
    # the kept units are scaled by 1/0.7, so the layer's gain is multiplied by sqrt(0.7).
    cfg = make_cfg(
        "model.input_size=67", "model.hidden=[512,512]", "model.dropout=[0.3,0.3]", "data=synthetic",
        f"model.dropconnect={str(dropconnect).lower()}",
    )  # fmt: skip
    torch.manual_seed(0)
    layers = _weighted(hydra.utils.instantiate(cfg.model))
    for name in ("fc6", "fc7"):
        weight = layers[name].weight
        assert weight.std().item() == pytest.approx(math.sqrt(2 * 0.7 / weight.shape[1]), rel=0.05)
    head = layers["fc8"].weight
    assert head.std().item() == pytest.approx(OUTPUT_GAIN / math.sqrt(head.shape[1]), rel=0.1)


@pytest.mark.parametrize(("activation", "gain"), [("relu", math.sqrt(2)), ("tanh", 5 / 3), ("sigmoid", 1.0)])
def test_he_init_takes_the_gain_of_each_layers_activation(make_cfg, activation: str, gain: float) -> None:
    cfg = make_cfg(
        "model=alexnet_bn", "model.input_size=67", "model.hidden=[512,512]", "data=synthetic",
        f"model.activation={activation}", "model.fc_activation=relu",
    )  # fmt: skip
    torch.manual_seed(0)
    layers = _weighted(hydra.utils.instantiate(cfg.model))
    conv = layers["conv3"].weight  # convs: the convs' activation's gain
    assert conv.std().item() == pytest.approx(gain / math.sqrt(conv[0].numel()), rel=0.05)
    fc = layers["fc6"].weight  # FC layers: fc_activation's gain (fc6 has no dropout before it in alexnet_bn)
    assert fc.std().item() == pytest.approx(math.sqrt(2 / fc.shape[1]), rel=0.05)
