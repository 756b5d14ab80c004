"""Which layers the views look at: every conv layer, named as the study names it, and what it outputs."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from alexnet_study.errors import ConfigError
from alexnet_study.models.freeze import layer_paths


@dataclass(frozen=True)
class ConvLayer:
    """A conv layer: its name (``conv3``, ``conv4_2``, ``layer4.2.conv3``), the ``nn.Conv2d``, and
    the module whose output the views read (the BatchNorm/activation right after the conv, or the
    conv itself): what the next layer sees."""

    name: str
    conv: nn.Conv2d
    output: nn.Module


def _follows_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or type(module).__module__ == nn.ReLU.__module__


def conv_layers(net: nn.Module) -> list[ConvLayer]:
    """Every ``nn.Conv2d`` of ``net`` in the order its modules are registered (forward order for
    AlexNet, VGG and ResNet). Raises :class:`ConfigError` when there is none: the filter,
    activation and Grad-CAM views need one."""
    try:
        names = {path: name for name, path in layer_paths(net).items()}
    except TypeError:  # a network the study did not build: module paths then
        names = {}
    leaves = [(path, m) for path, m in net.named_modules() if path and not list(m.children())]
    layers = []
    for i, (path, module) in enumerate(leaves):
        if not isinstance(module, nn.Conv2d):
            continue
        output: nn.Module = module
        for _, following in leaves[i + 1 :]:
            if not _follows_conv(following):
                break
            output = following
        layers.append(ConvLayer(names.get(path, path), module, output))
    if not layers:
        name = getattr(getattr(net, "spec", None), "name", type(net).__name__)
        raise ConfigError(
            f"model {name!r} has no conv layers (nn.Conv2d): the filter, activation and Grad-CAM views need at "
            "least one; the mistakes and the confusion matrix do not"
        )
    return layers


def spread(layers: list[ConvLayer], count: int) -> list[ConvLayer]:
    """At most ``count`` of ``layers``, evenly spaced, the first and the last included."""
    if len(layers) <= count:
        return list(layers)
    if count == 1:
        return [layers[-1]]
    step = (len(layers) - 1) / (count - 1)
    return [layers[round(i * step)] for i in range(count)]
