"""The first conv layer's filters as image tiles: what the network looks for in raw pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn

from alexnet_study.analysis.layers import conv_layers
from alexnet_study.report.plots import wrap_label


def first_conv_weight(net: nn.Module) -> torch.Tensor:
    """The first conv layer's weights (out, in, kh, kw), on the CPU."""
    return conv_layers(net)[0].conv.weight.detach().float().cpu()


def filter_tiles(weight: torch.Tensor) -> np.ndarray:
    """One tile per filter, (out, kh, kw, 3) in [0, 1]: RGB for 3 input channels, gray otherwise
    (the mean over input channels). Each filter is scaled to its own min..max, so a weak filter
    is as visible as a strong one (its scale is lost; the pattern is what matters here)."""
    weight = weight.detach().float().cpu()
    tiles = weight if weight.shape[1] == 3 else weight.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    low = tiles.amin(dim=(1, 2, 3), keepdim=True)
    span = (tiles.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
    return ((tiles - low) / span).permute(0, 2, 3, 1).numpy()


def mosaic(tiles: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """Tiles (N, h, w, 3) laid out in a grid with ``gap`` white pixels between them."""
    n, h, w, _ = tiles.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = np.ones((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), dtype=np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out


def draw_filters(ax: Axes, weight: torch.Tensor, title: str) -> None:
    """``weight``'s filters as a mosaic on ``ax`` (nearest-neighbour: a 3x3 kernel stays 3x3 blocks)."""
    ax.imshow(mosaic(filter_tiles(weight)), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def describe(weight: torch.Tensor) -> str:
    out, channels, kh, kw = weight.shape
    return f"{out} filters, {kh}x{kw}x{channels}"


def filters_figure(weight: torch.Tensor, name: str = "conv1") -> Figure:
    """Every filter of a conv layer (``weight``: out, in, kh, kw) as a tile in one grid."""
    fig = Figure(figsize=(6.0, 6.4), layout="constrained")
    draw_filters(fig.add_subplot(), weight, f"{name}: {describe(weight)} (each scaled to its own range)")
    return fig


def filters_side_by_side(weights: Sequence[torch.Tensor | np.ndarray], labels: Sequence[str]) -> Figure:
    """One panel per network (a sweep's arms), each its first-layer filters; an array is shown as it is
    (a ``filters_conv1.png`` read back when the arm kept no checkpoint)."""
    n = len(weights)
    columns = min(4, n)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(3.6 * columns, 3.9 * rows), layout="constrained")
    for i, (weight, label) in enumerate(zip(weights, labels, strict=True)):
        ax = fig.add_subplot(rows, columns, i + 1)
        title = wrap_label(label, 40)
        if isinstance(weight, np.ndarray):
            ax.imshow(weight, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        else:
            draw_filters(ax, weight, f"{title}\n{describe(weight)}")
    return fig
