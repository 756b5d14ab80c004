"""Turn a :class:`ModelSpec` into an ``nn.Module`` laid out like torchvision's AlexNet."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from alexnet_study.errors import ConfigError
from alexnet_study.models.layers import (
    DropConnectLinear,
    conv_output_size,
    init_weights,
    make_activation,
    make_lrn,
)
from alexnet_study.models.spec import ModelSpec, resolve_spec
from alexnet_study.models.transfer import TransferOptions, prepare

# The paper initialises these biases to 1 "to accelerate the early stages of learning".
PAPER_BIAS_ONE_CONVS = (2, 4, 5)


class AlexNet(nn.Module):
    """AlexNet-style network: ``features`` (convs), ``avgpool``, ``classifier`` (FC layers).

    Modules are flat ``nn.Sequential``s in torchvision's order, so the ``alexnet`` preset's
    ``state_dict`` is torchvision's. ``layer_paths`` maps the paper's layer names (``conv1`` ...
    ``conv5``, ``fc6`` ... ``fc8``, numbered by depth, and ``bnN``, ``actN``, ``lrnN``, ``poolN``,
    ``dropN`` for the modules around them) to module paths.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layer_paths: dict[str, str] = {}
        features, convs, channels, size = self._features(spec)
        self.features = nn.Sequential(*features)
        if spec.avgpool:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((spec.avgpool, spec.avgpool))
            size = spec.avgpool
        else:
            self.avgpool = nn.Identity()
        self.flat_features = channels * size * size
        classifier, linears = self._classifier(spec, self.flat_features, first_fc=len(spec.layers) + 1)
        self.classifier = nn.Sequential(*classifier)
        bias_one = [convs[i - 1] for i in PAPER_BIAS_ONE_CONVS if i <= len(convs)] + linears[:-1]
        init_weights(
            convs, linears, spec.init, bias_one=bias_one, activation=spec.activation,
            fc_activation=spec.fc_activation, fc_input_dropout=fc_input_rates(spec),
        )  # fmt: skip

    def _features(self, spec: ModelSpec) -> tuple[list[nn.Module], list[nn.Conv2d], int, int]:
        modules: list[nn.Module] = []
        convs: list[nn.Conv2d] = []
        channels, size = spec.in_channels, spec.input_size

        def add(name: str, module: nn.Module) -> None:
            self.layer_paths[name] = f"features.{len(modules)}"
            modules.append(module)

        for i, layer in enumerate(spec.layers, start=1):
            size = _next_size(spec, f"conv{i}", channels, size, layer.kernel_size, layer.stride, layer.padding)
            conv = nn.Conv2d(
                channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                groups=layer.groups, bias=not layer.batchnorm,
            )  # fmt: skip
            add(f"conv{i}", conv)
            convs.append(conv)
            channels = layer.out_channels
            if layer.batchnorm:
                add(f"bn{i}", nn.BatchNorm2d(channels))
            add(f"act{i}", make_activation(spec.activation))
            if layer.lrn and not (spec.lrn_after_pool and layer.pool):
                add(f"lrn{i}", make_lrn(spec.lrn_constants))
            if layer.pool:
                pool = layer.pool
                size = _next_size(spec, f"pool{i}", channels, size, pool.kernel_size, pool.stride, pool.padding)
                add(f"pool{i}", nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding))
                if layer.lrn and spec.lrn_after_pool:
                    add(f"lrn{i}", make_lrn(spec.lrn_constants))
        return modules, convs, channels, size

    def _classifier(self, spec: ModelSpec, in_features: int, first_fc: int) -> tuple[list[nn.Module], list[nn.Linear]]:
        modules: list[nn.Module] = []
        linears: list[nn.Linear] = []
        widths = [*spec.hidden, spec.num_classes]
        input_rates = fc_input_rates(spec)

        def add(name: str, module: nn.Module) -> None:
            self.layer_paths[name] = f"classifier.{len(modules)}"
            modules.append(module)

        for j, (width, rate) in enumerate(zip(widths, input_rates, strict=True)):
            number = first_fc + j
            # An Identity in a dropout slot keeps module indices (and pretrained state_dict keys) stable.
            if spec.dropout_position == "input" and j < len(spec.hidden):
                add(f"drop{number}", nn.Identity() if spec.dropconnect else nn.Dropout(rate))
            if spec.dropconnect and rate > 0:
                linear: nn.Linear = DropConnectLinear(in_features, width, p=rate)
            else:
                linear = nn.Linear(in_features, width)
            add(f"fc{number}", linear)
            linears.append(linear)
            if j < len(spec.hidden):
                add(f"act{number}", make_activation(spec.fc_activation))
                if spec.dropout_position == "output":
                    add(f"drop{number}", nn.Identity() if spec.dropconnect else nn.Dropout(spec.dropout[j]))
            in_features = width
        return modules, linears

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))


def fc_input_rates(spec: ModelSpec) -> list[float]:
    """The dropout (or DropConnect) rate that applies to each linear layer's input, output layer last."""
    return [*spec.dropout, 0.0] if spec.dropout_position == "input" else [0.0, *spec.dropout]


def _next_size(spec: ModelSpec, layer: str, channels: int, size: int, kernel: int, stride: int, padding: int) -> int:
    out = conv_output_size(size, kernel, stride, padding)
    if out < 1:
        raise ConfigError(
            f"model {spec.name!r}: the feature map collapses at {layer} (kernel {kernel}, stride {stride}, "
            f"padding {padding}): input {spec.in_channels}x{spec.input_size}x{spec.input_size} reaches "
            f"{channels}x{size}x{size} there, which would give {out}x{out}; use a larger model.input_size, "
            "fewer layers or smaller strides"
        )
    return out


def build_alexnet(**config: Any) -> AlexNet:
    """Build an AlexNet from a ``conf/model`` config (a spec plus sweep knobs, see :func:`resolve_spec`),
    with its transfer options (``pretrained``, ``freeze``, ...: :mod:`alexnet_study.models.transfer`)."""
    options = TransferOptions.pop_from(config)
    net = AlexNet(resolve_spec(**config))
    return prepare(net, "alexnet", options, reference=torchvision.models.alexnet, name=net.spec.name)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable
