"""Building blocks the AlexNet builder chooses from by name: activations, LRN, DropConnect, init."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

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

INITS = ("default", "he", "xavier", "paper", "tflearn")

# LRN constants in PyTorch's convention: b_c = a_c * (k + alpha / size * sum of a^2 over `size` channels)^-beta.
LRN_CONSTANTS: dict[str, dict[str, float]] = {
    # Krizhevsky et al. (2012), section 3.3: n=5, alpha=1e-4, beta=0.75, k=2.
    "paper": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0},
    # tflearn's local_response_normalization defaults (tf.nn.lrn: depth_radius=5, bias=1, alpha=1e-4,
    # beta=0.75): a window of 2*5+1=11 channels, and alpha multiplies the sum, not the mean: 11 * 1e-4 here.
    "tflearn": {"size": 11, "alpha": 11e-4, "beta": 0.75, "k": 1.0},
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[name]()


def make_lrn(constants: str) -> nn.LocalResponseNorm:
    """Local response normalization with one of the :data:`LRN_CONSTANTS` sets."""
    c = LRN_CONSTANTS[constants]
    return nn.LocalResponseNorm(size=int(c["size"]), alpha=c["alpha"], beta=c["beta"], k=c["k"])


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


# The gain that keeps a layer's output variance through each activation (torch.nn.init.calculate_gain):
# ReLU halves the second moment (sqrt(2)), leaky ReLU a little less, tanh's slope below 1 is made up by 5/3,
# sigmoid 1. ELU and GELU are ReLU-like for the inputs that matter: they take ReLU's.
GAINS: dict[str, float] = {
    "relu": nn.init.calculate_gain("relu"),
    "leaky_relu": nn.init.calculate_gain("leaky_relu", 0.01),
    "elu": nn.init.calculate_gain("relu"),
    "gelu": nn.init.calculate_gain("relu"),
    "sigmoid": nn.init.calculate_gain("sigmoid"),
    "tanh": nn.init.calculate_gain("tanh"),
}


# He's output layer, at half the linear gain. At gain 1 the logits started with std 3-10 (hidden ReLU units are
# He-scaled, and max-pools and dropout raise their second moment further): first losses of 7-28 at CIFAR-10's
# ln(10) = 2.3, and the next SGD step at the recipe's lr overshot to 38-114 or NaN. At 0.1 the loss started
# at ln(classes), but the lr-1e-3 Caltech arms barely moved in 32 steps: the head's weights also scale the
# gradient every lower layer gets. Measured with tests/training/test_learning.py's setup.
OUTPUT_GAIN = 0.5


def init_weights(
    convs: Iterable[nn.Conv2d],
    linears: Iterable[nn.Linear],
    scheme: str,
    bias_one: Iterable[nn.Module] = (),
    activation: str = "relu",
    fc_activation: str = "relu",
    fc_input_dropout: Sequence[float] = (),
) -> None:
    """Initialise conv and linear weights in place (the last linear layer is the output layer).

    - ``default``: PyTorch's own (torchvision's AlexNet keeps it): U(+-1/sqrt(fan_in)) weights and biases.
    - ``he``: He et al.'s variance-preserving init, N(0, gain^2/fan_in) (their eq. 10), with the gain of the
      activation that follows the layer (:data:`GAINS`: ``activation`` after the convs, ``fc_activation``
      after the hidden FC layers; sqrt(2) for ReLU, 5/3 for tanh, 1 for sigmoid). fan_in, not torchvision's
      fan_out: AlexNet's conv1 (3 -> 64 channels, 11x11) has 21x the fan_out of its fan_in, and fan_out
      shrank its signal ~3x there and a 9216-wide flatten into a narrow FC layer grew ~4x. A linear layer
      whose input is dropped with rate p (``fc_input_dropout``, one rate per linear layer; dropout before it
      or DropConnect on it) sees 1/(1-p) times the second moment in training, so its gain is multiplied by
      sqrt(1-p). The output layer, which feeds the softmax, gets OUTPUT_GAIN (0.5) instead of the linear
      gain 1: the first loss nearer ln(classes). Zero biases.
    - ``xavier``: Glorot uniform, zero biases.
    - ``paper``: N(0, 0.01) weights, biases 1 for the layers in ``bias_one`` (the paper's conv2, conv4,
      conv5 and hidden FC layers) and 0 elsewhere.
    - ``tflearn``: tflearn's defaults: conv weights ``uniform_scaling`` (U(+-sqrt(3/fan_in))), FC weights
      ``truncated_normal`` (stddev 0.02, cut at two stddevs), zero biases.
    """
    if scheme == "default":
        return
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; accepted: {', '.join(INITS)}")
    linears = list(linears)
    output = linears[-1] if linears else None
    bias_one_ids = {id(m) for m in bias_one}
    kept = {id(linear): 1.0 - rate for linear, rate in zip(linears, fc_input_dropout, strict=False)}
    for layer in [*convs, *linears]:
        conv = isinstance(layer, nn.Conv2d)
        gain = OUTPUT_GAIN if layer is output else GAINS[activation if conv else fc_activation]
        gain *= math.sqrt(kept.get(id(layer), 1.0))
        _init_weight(layer.weight, scheme, conv=conv, gain=gain)
        if layer.bias is not None:
            paper_one = scheme == "paper" and id(layer) in bias_one_ids
            nn.init.constant_(layer.bias, 1.0 if paper_one else 0.0)


def _init_weight(weight: torch.Tensor, scheme: str, conv: bool, gain: float) -> None:
    fan_in = weight[0].numel()
    if scheme == "he":
        nn.init.normal_(weight, mean=0.0, std=gain / math.sqrt(fan_in))
    elif scheme == "xavier":
        nn.init.xavier_uniform_(weight)
    elif scheme == "paper":
        nn.init.normal_(weight, mean=0.0, std=0.01)
    elif conv:  # tflearn's uniform_scaling, factor 1.0
        bound = math.sqrt(3.0 / fan_in)
        nn.init.uniform_(weight, -bound, bound)
    else:
        truncated_normal_(weight, std=0.02)


@torch.no_grad()
def truncated_normal_(weight: torch.Tensor, std: float) -> None:
    """N(0, std) with every value beyond two stddevs drawn again, as ``tf.truncated_normal`` does.

    The same distribution as ``nn.init.trunc_normal_(a=-2*std, b=2*std)``, at a fraction of its cost on
    tflearn's 16384x4096 FC layer (one extra draw for the ~5% of values outside, then fewer each round).
    """
    weight.normal_(0.0, std)
    if weight.is_meta:
        return
    flat = weight.view(-1)
    redraw = (flat.abs() > 2 * std).nonzero().squeeze(1)
    while redraw.numel():
        values = torch.empty(redraw.numel(), dtype=weight.dtype, device=weight.device).normal_(0.0, std)
        flat[redraw] = values
        redraw = redraw[values.abs() > 2 * std]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution or max-pool (``ceil_mode=False``) on one axis."""
    return math.floor((size + 2 * padding - kernel) / stride) + 1
