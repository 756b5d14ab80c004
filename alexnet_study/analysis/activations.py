"""Feature maps: a few images followed through the conv layers, each layer's strongest channels shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from alexnet_study.analysis.gradcam import capture, eager_forward
from alexnet_study.analysis.layers import ConvLayer


def activation_maps(net: nn.Module, inputs: torch.Tensor, layers: Sequence[ConvLayer]) -> dict[str, torch.Tensor]:
    """Each layer's output (N, C, h, w, on the CPU) for ``inputs``, in eval mode, by layer name."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), capture([layer.output for layer in layers]) as seen:
            eager_forward(net, inputs)
    finally:
        net.train(was_training)
    return {layer.name: seen[layer.output].float().cpu() for layer in layers}


def strongest_channels(maps: torch.Tensor, count: int) -> list[int]:
    """The ``count`` channels of one image's maps (C, h, w) with the largest mean activation."""
    return maps.mean(dim=(1, 2)).topk(min(count, maps.shape[0])).indices.tolist()


def strip(maps: torch.Tensor, channels: Sequence[int], size: int) -> np.ndarray:
    """The chosen channels side by side, each scaled to its own min..max and drawn ``size`` pixels
    wide (nearest neighbour: a map's cells stay visible), blank (NaN) between them."""
    tiles = F.interpolate(maps[list(channels)][None].float(), size=(size, size), mode="nearest")[0]
    low = tiles.amin(dim=(1, 2), keepdim=True)
    tiles = ((tiles - low) / (tiles.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)).numpy()
    gap = max(1, size // 12)
    out = np.full((size, len(channels) * (size + gap) - gap), np.nan, dtype=np.float32)
    for i, tile in enumerate(tiles):
        out[:, i * (size + gap) : i * (size + gap) + size] = tile
    return out


def activations_figure(images: torch.Tensor, maps: Mapping[str, torch.Tensor], channels: int = 6) -> Figure:
    """For each image (N, C, H, W in [0, 1]): the image, and one row per layer of its strongest
    ``channels`` feature maps (bright: strong activation; each map scaled to its own range)."""
    n, names = images.shape[0], list(maps)
    rows = n * len(names)
    fig = Figure(figsize=(1.3 + 1.15 * channels, 1.15 * rows + 0.5), layout="constrained")
    fig.suptitle("strongest channels per conv layer (each map scaled to its own range)", fontsize=10)
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, channels])
    cmap = colormaps["viridis"].with_extremes(bad="white")
    # Every layer's maps drawn at one size (a multiple of the largest), so the rows line up.
    largest = max(m.shape[-1] for m in maps.values())
    size = largest * max(1, round(48 / largest))
    pictures = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        top = fig.add_subplot(grid[i * len(names) : (i + 1) * len(names), 0])
        top.imshow(pictures[i][..., 0] if pictures.shape[-1] == 1 else pictures[i], cmap="gray")
        top.set_title(f"image {i + 1}", fontsize=8)
        top.axis("off")
        for j, name in enumerate(names):
            layer_maps = maps[name][i]
            chosen = strongest_channels(layer_maps, channels)
            ax = fig.add_subplot(grid[i * len(names) + j, 1])
            ax.imshow(strip(layer_maps, chosen, size), cmap=cmap, interpolation="nearest", aspect="equal")
            c, h, w = layer_maps.shape
            ax.set_title(f"{name} ({c} ch, {h}x{w}): channels {', '.join(map(str, chosen))}", fontsize=7, loc="left")
            ax.axis("off")
    return fig
