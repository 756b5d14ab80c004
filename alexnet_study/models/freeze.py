"""Freezing layers for transfer learning, and what that needs: layer names, frozen BatchNorm, lr groups.

Every network the study builds names its layers in forward order (:func:`layer_paths`):

- AlexNet (the builder): ``AlexNet.layer_paths``, the paper's names: ``conv1``, ``act1``, ``pool1``,
  ... ``conv5``, ``pool5``, ``fc6``, ``fc7``, ``fc8`` (``bn``/``lrn`` where the spec has them).
- torchvision's VGG: ``conv1_1``, ``relu1_1``, ``conv1_2``, ..., ``pool1``, ... ``conv5_3``,
  ``pool5`` (``bn1_1`` ... for the ``_bn`` variants), then ``fc6``, ``fc7``, ``fc8``.
- torchvision's ResNet: its top-level modules, ``conv1``, ``bn1``, ``relu``, ``maxpool``,
  ``layer1`` ... ``layer4``, ``avgpool``, ``fc``.

``model.freeze``: ``none``; ``features`` (everything before the classifier); ``classifier``
(the FC layers, head included; ResNet's is ``fc``); ``head`` (everything but the last layer:
a fixed feature extractor); ``until:<layer>`` (that layer and every one before it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch import nn
from torchvision.models import VGG, ResNet

from alexnet_study.errors import ConfigError

FREEZE_MODES = ("none", "features", "classifier", "head", "until:<layer>")


def layer_paths(net: nn.Module) -> dict[str, str]:
    """Layer name -> module path, in forward order (see the module docstring)."""
    if isinstance(net, ResNet):
        return {name: name for name, _ in net.named_children()}
    if isinstance(net, VGG):
        return _vgg_paths(net)
    paths = getattr(net, "layer_paths", None)  # the builder's AlexNet (builder.py imports this module)
    if isinstance(paths, dict):
        return dict(paths)
    raise TypeError(f"{type(net).__name__}: no layer names known for freezing")


def _vgg_paths(net: VGG) -> dict[str, str]:
    paths: dict[str, str] = {}
    block, index = 1, 0
    for i, module in enumerate(net.features):
        if isinstance(module, nn.MaxPool2d):
            paths[f"pool{block}"] = f"features.{i}"
            block, index = block + 1, 0
            continue
        if isinstance(module, nn.Conv2d):
            index += 1
        kind = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu"}[type(module)]
        paths[f"{kind}{block}_{index}"] = f"features.{i}"
    linears = [i for i, module in enumerate(net.classifier) if isinstance(module, nn.Linear)]
    paths.update({f"fc{block + n}": f"classifier.{i}" for n, i in enumerate(linears)})
    return paths


def head_path(net: nn.Module) -> str:
    """The last layer's module path (the one replaced for ``num_classes``): the last ``nn.Linear``."""
    return [path for path, module in net.named_modules() if isinstance(module, nn.Linear)][-1]


def classifier_path(net: nn.Module) -> str:
    """The module holding the FC layers: ``classifier`` (AlexNet, VGG) or ``fc`` (ResNet)."""
    return "fc" if isinstance(net, ResNet) else "classifier"


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def frozen_names(net: nn.Module, mode: str) -> list[str]:
    """Names of the parameters ``model.freeze=mode`` freezes (raises :class:`ConfigError` for a bad mode)."""
    names = [name for name, _ in net.named_parameters()]
    if mode == "none":
        return []
    if mode == "features":
        return [n for n in names if not _under(n, [classifier_path(net)])]
    if mode == "classifier":
        return [n for n in names if _under(n, [classifier_path(net)])]
    if mode == "head":
        return [n for n in names if not _under(n, [head_path(net)])]
    if isinstance(mode, str) and mode.startswith("until:"):
        layer = mode.removeprefix("until:")
        paths = layer_paths(net)
        if layer not in paths:
            raise ConfigError(f"model.freeze={mode!r}: no layer {layer!r} in this model; accepted: {', '.join(paths)}")
        order = list(paths)
        frozen = [paths[name] for name in order[: order.index(layer) + 1]]
        return [n for n in names if _under(n, frozen)]
    raise ConfigError(f"model.freeze={mode!r}: unknown; accepted: {', '.join(FREEZE_MODES)}")


def freeze(net: nn.Module, mode: str, names: Iterable[str] | None = None) -> int:
    """Freeze what ``mode`` says (``requires_grad=False``); return how many parameters were frozen.

    ``names``: :func:`frozen_names` of ``net`` and ``mode`` when the caller has them already.
    """
    frozen = set(frozen_names(net, mode) if names is None else names)
    params = dict(net.named_parameters())
    if frozen and frozen == set(params):
        raise ConfigError(f"model.freeze={mode!r} freezes every layer: nothing would train")
    for name in frozen:
        params[name].requires_grad_(False)
    return sum(params[name].numel() for name in frozen)


def frozen_batchnorms(net: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm layers whose weights are all frozen."""
    for module in net.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            yield module


def keep_frozen_batchnorm_in_eval(net: nn.Module) -> None:
    """Put frozen BatchNorm layers in eval mode, so training uses and keeps their running statistics
    (a frozen layer must not drift with the new data's batch statistics)."""
    for module in frozen_batchnorms(net):
        module.eval()


def lr_groups(module: nn.Module, net: nn.Module, backbone_lr_scale: float | None) -> list[Any]:
    """The trainable parameters of ``module``, as one list, or with ``backbone_lr_scale`` as two
    optimizer groups: the head (and anything outside ``net``) at the optimizer's lr, the rest of
    ``net`` at ``lr * backbone_lr_scale`` (applied by :func:`scale_group_lrs` once the optimizer exists)."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    if backbone_lr_scale is None:
        return trainable
    head = {id(p) for p in net.get_submodule(head_path(net)).parameters()}
    outside = {id(p) for p in module.parameters()} - {id(p) for p in net.parameters()}
    full_lr = head | outside
    groups = [
        {"params": [p for p in trainable if id(p) in full_lr], "lr_scale": 1.0, "name": "head"},
        {"params": [p for p in trainable if id(p) not in full_lr], "lr_scale": backbone_lr_scale, "name": "backbone"},
    ]  # fmt: skip
    return [group for group in groups if group["params"]]


def scale_group_lrs(optimizer: Any) -> None:
    """Multiply each group's lr by its ``lr_scale`` (groups made by :func:`lr_groups`)."""
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_scale", 1.0)
