"""Building blocks the AlexNet builder chooses from by name: activations, LRN, DropConnect, init."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

INITS = ("default", "he", "xavier", "paper")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[name]()


def paper_lrn() -> nn.LocalResponseNorm:
    """Local response normalization with the constants of Krizhevsky et al. (2012), section 3.3."""
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0)


class DropConnectLinear(nn.Linear):
    """A linear layer that drops individual weights (Wan et al., 2013) instead of activations.

    In training every weight is zeroed with probability ``p`` (one mask per batch) and the kept
    weights are scaled by ``1 / (1 - p)``, so evaluation uses the plain weights, as with dropout.
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropConnect probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return super().forward(x)
        keep = torch.empty_like(self.weight).bernoulli_(1.0 - self.p)
        return F.linear(x, self.weight * keep / (1.0 - self.p), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


def init_weights(
    convs: Iterable[nn.Conv2d], linears: Iterable[nn.Linear], scheme: str, bias_one: Iterable[nn.Module] = ()
) -> None:
    """Initialise conv and linear weights in place.

    ``default`` keeps PyTorch's own initialisation; ``he`` and ``xavier`` are the usual fan-based
    schemes with zero biases; ``paper`` is N(0, 0.01) weights with biases 1 for the layers in
    ``bias_one`` (the paper's conv2, conv4, conv5 and hidden FC layers) and 0 elsewhere.
    """
    if scheme == "default":
        return
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; accepted: {', '.join(INITS)}")
    bias_one_ids = {id(m) for m in bias_one}
    for layer in [*convs, *linears]:
        if scheme == "he":
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif scheme == "xavier":
            nn.init.xavier_uniform_(layer.weight)
        else:
            nn.init.normal_(layer.weight, mean=0.0, std=0.01)
        if layer.bias is not None:
            paper_one = scheme == "paper" and id(layer) in bias_one_ids
            nn.init.constant_(layer.bias, 1.0 if paper_one else 0.0)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or max-pool (``ceil_mode=False``) on one axis."""
    return math.floor((size + 2 * padding - kernel) / stride) + 1
