"""resolve_spec and AlexNet(spec) used directly, without a config."""

from __future__ import annotations

import pytest
import torch

from alexnet_study.models import AlexNet, ConvSpec, PoolSpec, count_parameters, resolve_spec
from alexnet_study.models.transfer import TRANSFER_KEYS

from .conftest import PRESETS

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
