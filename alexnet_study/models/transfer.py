"""The transfer-learning options every model config has, and applying them to a freshly built network.

``conf/model/_transfer.yaml`` lists them: ``pretrained`` (load torchvision's ImageNet weights, all
but the last layer, which is built for ``num_classes``), ``weights`` (which of torchvision's weight
sets), ``weights_path`` (a file instead of the hub cache), ``freeze`` (see :mod:`.freeze`),
``backbone_lr_scale`` (used by ``ImageClassifier.configure_optimizers``) and
``input_normalization`` (``data.normalize``, checked against the weights).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from alexnet_study.errors import ConfigError
from alexnet_study.models.freeze import freeze, frozen_names, head_path, layer_paths
from alexnet_study.models.pretrained import check_layout, fetch_state_dict, load_backbone

log = logging.getLogger(__name__)

# The normalization torchvision's ImageNet weights were trained with (data.normalize).
PRETRAINED_NORMALIZATION = "imagenet"


@dataclass(frozen=True)
class TransferOptions:
    """The transfer-learning keys of a model config (defaults: a network trained from scratch)."""

    pretrained: bool = False
    weights: str = "DEFAULT"
    weights_path: str | None = None
    freeze: str = "none"
    backbone_lr_scale: float | None = None
    input_normalization: str = PRETRAINED_NORMALIZATION

    @classmethod
    def pop_from(cls, config: MutableMapping[str, Any]) -> TransferOptions:
        """Take these keys out of a model config (the rest is the architecture's) and validate them."""
        options = cls(**{f.name: config.pop(f.name) for f in fields(cls) if f.name in config})
        if not isinstance(options.pretrained, bool):
            raise ConfigError(f"model.pretrained={options.pretrained!r}: accepted: true, false")
        scale = options.backbone_lr_scale
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0):
            raise ConfigError(f"model.backbone_lr_scale={scale!r}: must be a number > 0 (e.g. 0.1), or null")
        if options.weights_path is not None and not options.pretrained:
            raise ConfigError(f"model.weights_path={options.weights_path!r} needs model.pretrained=true")
        if options.pretrained and options.input_normalization != PRETRAINED_NORMALIZATION:
            raise ConfigError(
                f"data.normalize={options.input_normalization!r} with model.pretrained=true: the ImageNet weights "
                f"expect inputs normalized with ImageNet's mean and std; set data.normalize={PRETRAINED_NORMALIZATION}"
            )
        return options


TRANSFER_KEYS = tuple(f.name for f in fields(TransferOptions))


def prepare(
    net: nn.Module, arch: str, options: TransferOptions, reference: Callable[[], nn.Module], name: str
) -> nn.Module:
    """Load ``arch``'s ImageNet weights into ``net`` (all but its head) if asked, then freeze layers.

    ``reference`` builds torchvision's ``arch`` (called on the meta device: layout only) to check
    that ``net`` is laid out like the weights. Freezing happens here, before anything counts the
    trainable parameters.
    """
    frozen = frozen_names(net, options.freeze)  # a bad freeze value fails before any weights are read
    names = {path: layer for layer, path in layer_paths(net).items()}
    head = head_path(net)
    if options.pretrained:
        with torch.device("meta"):
            check_layout(net, reference(), head, f"model {name!r}", names)
        state, source = fetch_state_dict(arch, options.weights, options.weights_path)
        loaded = load_backbone(net, state, head, source, names)
        head_module = net.get_submodule(head)
        log.info(
            "model %s: %d ImageNet weight tensors from %s; new head %s (%s)",
            name, loaded, source, names.get(head, head), f"{head_module.in_features} -> {head_module.out_features}",
        )  # fmt: skip
    if frozen:
        count = freeze(net, options.freeze, frozen)
        log.info("model %s: model.freeze=%s froze %s parameters", name, options.freeze, f"{count:,}")
    return net
