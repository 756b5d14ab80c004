"""A spec that cannot work: the collapse error and config errors that name the key, the value and what is accepted."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf

from alexnet_study.errors import ConfigError

from .conftest import build, with_changes

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
