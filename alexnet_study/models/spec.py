"""Declarative AlexNet specs, and the sweep knobs (depth, strides, ...) that rewrite them.

A spec is plain data: the ``conf/model/*.yaml`` presets are specs, and every study knob is an
override of one. :func:`resolve_spec` turns the config dict into a validated :class:`ModelSpec`
with the knobs applied; errors name the config key, the value and what would be accepted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alexnet_study.errors import ConfigError, check_int
from alexnet_study.models.layers import ACTIVATIONS, INITS, LRN_CONSTANTS

MAX_FC_DEPTH = 4
DROPOUT_POSITIONS = ("input", "output")


@dataclass(frozen=True)
class PoolSpec:
    """Max-pooling after a conv layer."""

    kernel_size: int = 3
    stride: int = 2
    padding: int = 0


@dataclass(frozen=True)
class ConvSpec:
    """One conv layer: conv -> [BatchNorm] -> activation -> [LRN] -> [max-pool] (LRN may follow the pool)."""

    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    batchnorm: bool = False
    lrn: bool = False
    pool: PoolSpec | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A whole network: conv layers, optional adaptive average pool, and the classifier.

    ``hidden`` are the widths of the hidden FC layers (the output layer is added for
    ``num_classes``); ``dropout`` has one rate per hidden layer, applied to that layer's input
    (``dropout_position="input"``, torchvision's layout) or to its output (``"output"``, the
    paper's and tflearn's). With ``dropconnect`` each rate drops the weights of the linear layer
    the dropout would have fed, instead of activations.
    """

    layers: tuple[ConvSpec, ...]
    hidden: tuple[int, ...] = (4096, 4096)
    dropout: tuple[float, ...] = (0.5, 0.5)
    dropout_position: str = "input"
    dropconnect: bool = False
    avgpool: int | None = 6
    activation: str = "relu"
    fc_activation: str = "relu"
    lrn_after_pool: bool = False
    lrn_constants: str = "paper"
    init: str = "default"
    in_channels: int = 3
    num_classes: int = 1000
    input_size: int = 227
    name: str = "alexnet"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


MAX_INPUT_SIZE = 1024  # 4.5x AlexNet's 227


def _key(name: str) -> str:
    return f"model.{name}"


def _check_choice(key: str, value: Any, accepted: Sequence[str]) -> str:
    if value not in accepted:
        raise ConfigError(f"{key}={value!r}: unknown; accepted: {', '.join(accepted)}")
    return value


def _check_rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{key}={value!r}: must be a probability in [0, 1)")
    return float(value)


def _check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: accepted: true, false")
    return value


def check_input_size(key: str, value: Any, minimum: int = 1) -> int:
    """Pixels per side of the network's input: at most MAX_INPUT_SIZE (beyond, one batch of
    activations takes terabytes)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INPUT_SIZE:
        raise ConfigError(f"{key}={value!r}: must be an integer in {minimum}..{MAX_INPUT_SIZE} (pixels per side)")
    return value


def _as_list(key: str, value: Any) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{key}={value!r}: must be a list, e.g. {key}=[2,2,2]")
    return list(value)


def _pool_spec(key: str, raw: Any) -> PoolSpec | None:
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}={raw!r}: must be null or a mapping with kernel_size, stride, padding")
    unknown = set(raw) - {f.name for f in dataclasses.fields(PoolSpec)}
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {sorted(unknown)}; accepted: kernel_size, stride, padding")
    pool = PoolSpec(**raw)
    check_int(f"{key}.kernel_size", pool.kernel_size, 1)
    check_int(f"{key}.stride", pool.stride, 1)
    check_int(f"{key}.padding", pool.padding, 0)
    if pool.padding > pool.kernel_size // 2:
        raise ConfigError(f"{key}.padding={pool.padding}: must be at most half the kernel ({pool.kernel_size // 2})")
    return pool


def _conv_spec(key: str, raw: Any) -> ConvSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key}={raw!r}: must be a mapping with out_channels, kernel_size, ...")
    accepted = {f.name for f in dataclasses.fields(ConvSpec)}
    unknown = set(raw) - accepted
    if unknown:
        raise ConfigError(f"{key}: unknown field(s) {sorted(unknown)}; accepted: {', '.join(sorted(accepted))}")
    if "out_channels" not in raw or "kernel_size" not in raw:
        raise ConfigError(f"{key}: out_channels and kernel_size are required")
    fields = dict(raw)
    fields["pool"] = _pool_spec(f"{key}.pool", raw.get("pool"))
    conv = ConvSpec(**fields)
    check_int(f"{key}.out_channels", conv.out_channels, 1)
    check_int(f"{key}.kernel_size", conv.kernel_size, 1)
    check_int(f"{key}.stride", conv.stride, 1)
    check_int(f"{key}.padding", conv.padding, 0)
    check_int(f"{key}.groups", conv.groups, 1)
    return conv


def _fit_length(values: list[Any], length: int) -> list[Any]:
    """Truncate, or extend by repeating the last value (an empty list stays empty)."""
    if not values:
        return values
    return values[:length] + [values[-1]] * max(0, length - len(values))


def resolve_spec(
    *,
    layers: Sequence[Mapping[str, Any]],
    hidden: Sequence[int] = (4096, 4096),
    dropout: Sequence[float] | float = (0.5, 0.5),
    dropout_position: str = "input",
    dropconnect: bool = False,
    avgpool: int | None = 6,
    activation: str = "relu",
    fc_activation: str | None = None,
    lrn_after_pool: bool = False,
    lrn_constants: str = "paper",
    init: str = "default",
    in_channels: int = 3,
    num_classes: int = 1000,
    input_size: int = 227,
    name: str = "alexnet",
    conv_depth: int | None = None,
    fc_depth: int | None = None,
    pool_strides: Sequence[int] | None = None,
    conv_strides: Sequence[int] | None = None,
    batchnorm: bool | None = None,
    **extra: Any,
) -> ModelSpec:
    """Validate a model config and apply its sweep knobs.

    Knobs (``None`` leaves the listed layers alone):
      - ``conv_depth``: keep the first N conv layers; the last kept one takes the final layer's
        width (and its pool, if it has none), as when conv5 is removed and conv4 goes 384->256.
      - ``fc_depth``: number of FC layers including the output layer (1..4); hidden widths and
        dropout rates are truncated or extended by repeating the last one.
      - ``pool_strides`` / ``conv_strides``: one stride per max-pool / per conv layer, in order.
      - ``batchnorm``: BatchNorm after every conv (true) or none (false).
    Unknown keys other than Hydra's ``_target_`` are kept in ``extra`` for other builders.
    """
    convs = _conv_layers(layers, conv_depth, conv_strides, pool_strides, batchnorm)
    hidden_widths, rates = _fc_layers(hidden, dropout, fc_depth)
    activations = tuple(ACTIVATIONS)
    spec = ModelSpec(
        layers=tuple(convs),
        hidden=tuple(hidden_widths),
        dropout=tuple(rates),
        dropout_position=_check_choice(_key("dropout_position"), dropout_position, DROPOUT_POSITIONS),
        dropconnect=_check_bool(_key("dropconnect"), dropconnect),
        avgpool=None if avgpool is None else check_int(_key("avgpool"), avgpool, 1),
        activation=_check_choice(_key("activation"), activation, activations),
        fc_activation=_check_choice(_key("fc_activation"), fc_activation or activation, activations),
        lrn_after_pool=bool(lrn_after_pool),
        lrn_constants=_check_choice(_key("lrn_constants"), lrn_constants, tuple(LRN_CONSTANTS)),
        init=_check_choice(_key("init"), init, INITS),
        in_channels=check_int(_key("in_channels"), in_channels, 1),
        num_classes=check_int(_key("num_classes"), num_classes, 2),
        input_size=check_input_size(_key("input_size"), input_size),
        name=name,
        extra={k: v for k, v in extra.items() if not k.startswith("_")},
    )
    _check_groups(spec)
    return spec


def _conv_layers(
    layers: Sequence[Mapping[str, Any]],
    conv_depth: int | None,
    conv_strides: Sequence[int] | None,
    pool_strides: Sequence[int] | None,
    batchnorm: bool | None,
) -> list[ConvSpec]:
    """The conv layers as listed, with the conv knobs applied."""
    raw_layers = _as_list(_key("layers"), layers)
    if not raw_layers:
        raise ConfigError(f"{_key('layers')}: at least one conv layer is required")
    convs = [_conv_spec(f"{_key('layers')}[{i}]", raw) for i, raw in enumerate(raw_layers)]
    if conv_depth is not None:
        convs = _keep_convs(convs, conv_depth)
    if conv_strides is not None:
        strides = _as_list(_key("conv_strides"), conv_strides)
        if len(strides) != len(convs):
            raise ConfigError(
                f"{_key('conv_strides')}={strides}: {len(strides)} strides for {len(convs)} conv layers; give one per conv layer"
            )
        convs = [
            replace(c, stride=check_int(f"{_key('conv_strides')}[{i}]", s, 1))
            for i, (c, s) in enumerate(zip(convs, strides, strict=True))
        ]
    if pool_strides is not None:
        convs = _with_pool_strides(convs, _as_list(_key("pool_strides"), pool_strides))
    if batchnorm is not None:
        if not isinstance(batchnorm, bool):
            raise ConfigError(f"{_key('batchnorm')}={batchnorm!r}: accepted: true, false, null (as the preset lists)")
        convs = [replace(c, batchnorm=batchnorm) for c in convs]
    return convs


def _keep_convs(convs: list[ConvSpec], conv_depth: Any) -> list[ConvSpec]:
    """The first ``conv_depth`` conv layers; the last kept one takes the final layer's width (and its
    pool, if it has none), as when conv5 is removed and conv4 goes 384->256."""
    if isinstance(conv_depth, bool) or not isinstance(conv_depth, int) or not 1 <= conv_depth <= len(convs):
        raise ConfigError(
            f"{_key('conv_depth')}={conv_depth}: this preset has {len(convs)} conv layers; accepted: 1..{len(convs)}"
        )
    final = convs[-1]
    kept = convs[:conv_depth]
    if conv_depth < len(convs):
        last = kept[-1]
        kept[-1] = replace(last, out_channels=final.out_channels, pool=last.pool or final.pool)
    return kept


def _with_pool_strides(convs: list[ConvSpec], strides: list[Any]) -> list[ConvSpec]:
    """One stride per max-pool, in order."""
    pooled = [i for i, c in enumerate(convs) if c.pool is not None]
    if len(strides) != len(pooled):
        raise ConfigError(
            f"{_key('pool_strides')}={strides}: {len(strides)} strides for {len(pooled)} max-pool layers; give one per max-pool"
        )
    convs = list(convs)
    for n, (i, s) in enumerate(zip(pooled, strides, strict=True)):
        check_int(f"{_key('pool_strides')}[{n}]", s, 1)
        convs[i] = replace(convs[i], pool=replace(convs[i].pool, stride=s))
    return convs


def _fc_layers(
    hidden: Sequence[int], dropout: Sequence[float] | float, fc_depth: int | None
) -> tuple[list[int], list[float]]:
    """Hidden FC widths and their dropout rates, with ``fc_depth`` applied (truncated, or extended by
    repeating the last one)."""
    hidden_widths = [check_int(f"{_key('hidden')}[{i}]", w, 1) for i, w in enumerate(_as_list(_key("hidden"), hidden))]
    rates = [dropout] * len(hidden_widths) if isinstance(dropout, int | float) else _as_list(_key("dropout"), dropout)
    rates = [_check_rate(f"{_key('dropout')}[{i}]", p) for i, p in enumerate(rates)]
    if fc_depth is not None:
        if isinstance(fc_depth, bool) or not isinstance(fc_depth, int) or not 1 <= fc_depth <= MAX_FC_DEPTH:
            raise ConfigError(
                f"{_key('fc_depth')}={fc_depth}: accepted: 1..{MAX_FC_DEPTH} (FC layers including the output layer)"
            )
        if fc_depth > 1 and not hidden_widths:
            raise ConfigError(
                f"{_key('fc_depth')}={fc_depth}: {_key('hidden')} is empty, so there is no width to repeat"
            )
        hidden_widths = _fit_length(hidden_widths, fc_depth - 1)
        rates = _fit_length(rates or [0.0], fc_depth - 1)
    if len(rates) != len(hidden_widths):
        raise ConfigError(
            f"{_key('dropout')}={rates}: {len(rates)} rates for {len(hidden_widths)} hidden FC layers; give one per hidden layer"
        )
    return hidden_widths, rates


def _check_groups(spec: ModelSpec) -> None:
    channels = spec.in_channels
    for i, conv in enumerate(spec.layers):
        if channels % conv.groups or conv.out_channels % conv.groups:
            raise ConfigError(
                f"{_key('layers')}[{i}].groups={conv.groups}: must divide the layer's input ({channels}) "
                f"and output ({conv.out_channels}) channels"
            )
        channels = conv.out_channels
