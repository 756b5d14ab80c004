"""Figures: one implementation for run dirs, TensorBoard, sweep reports and notebooks.

Built on matplotlib's object-oriented API (no pyplot state, no GUI backend): a function returns
a ``Figure``; :func:`save` writes it as PNG and :func:`to_array` renders it for TensorBoard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SPLIT_COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def class_distribution(counts: Mapping[str, Sequence[int]], classes: Sequence[str]) -> Figure:
    """Grouped bars: images per class in each split (class names on the x axis)."""
    n_classes, n_splits = len(classes), max(1, len(counts))
    fig = Figure(figsize=(min(40.0, max(6.0, 0.35 * n_classes * n_splits**0.5)), 4.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / n_splits
    positions = np.arange(n_classes)
    for i, (split, values) in enumerate(counts.items()):
        ax.bar(positions + (i - (n_splits - 1) / 2) * width, values, width, label=f"{split} ({sum(values)})",
               color=SPLIT_COLORS.get(split))  # fmt: skip
    rotation = 90 if n_classes > 12 else 30 if n_classes > 4 else 0
    ax.set_xticks(positions, classes, rotation=rotation, ha="right" if rotation == 30 else "center",
                  fontsize=7 if n_classes > 30 else 9)  # fmt: skip
    ax.set_ylabel("images")
    ax.set_title("class distribution")
    ax.legend(fontsize=8)
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str], columns: int = 8) -> Figure:
    """A grid of images (N, C, H, W) in [0, 1], each titled (e.g. with its class name)."""
    n = images.shape[0]
    rows = max(1, -(-n // columns))
    cols = min(columns, max(1, n))
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows), layout="constrained")
    pictures = images.detach().float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if i < n:
            picture = pictures[i]
            ax.imshow(
                picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray" if picture.shape[-1] == 1 else None
            )
            ax.set_title(titles[i], fontsize=8)
    return fig


def save(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def to_array(fig: Figure, dpi: int = 100) -> np.ndarray:
    """Render ``fig`` to an (H, W, 3) uint8 array (for TensorBoard's ``add_image``)."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
