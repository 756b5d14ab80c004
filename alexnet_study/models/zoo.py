"""torchvision's ResNets and VGGs (``model=resnet50``, ``model=vgg16``), with the transfer options AlexNet has."""

from __future__ import annotations

import functools
from typing import Any

import torchvision
from torch import nn
from torchvision.models import VGG, ResNet

from alexnet_study.errors import ConfigError, check_int
from alexnet_study.models.spec import check_input_size
from alexnet_study.models.transfer import TransferOptions, prepare

# Both downsample by 32: a smaller input has no feature map left before the classifier.
MIN_INPUT_SIZE = 32


def torchvision_archs() -> list[str]:
    """The torchvision classification models this builder accepts: the ResNet and VGG families."""
    return [name for name in torchvision.models.list_models(torchvision.models) if name.startswith(("resnet", "vgg"))]


def build_torchvision(
    *, arch: str, num_classes: int, input_size: int = 224, name: str | None = None, **config: Any
) -> nn.Module:
    """torchvision's ``arch`` with a ``num_classes`` head, optionally ImageNet-pretrained and partly frozen.

    ``config`` holds the transfer options (:class:`~alexnet_study.models.transfer.TransferOptions`);
    anything else is a config mistake and is refused.
    """
    options = TransferOptions.pop_from(config)
    if config:
        raise ConfigError(f"model: unknown key(s) {sorted(config)} for torchvision's {arch}")
    if arch not in torchvision_archs():
        raise ConfigError(f"model.arch={arch!r}: unknown; accepted: {', '.join(torchvision_archs())}")
    check_int("model.num_classes", num_classes, 2)
    check_input_size("model.input_size", input_size, MIN_INPUT_SIZE)
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    assert isinstance(net, ResNet | VGG)
    reference = functools.partial(torchvision.models.get_model, arch, weights=None)
    return prepare(net, arch, options, reference=reference, name=name or arch)
