"""A user's own images through a trained network: prediction, top-5 and the Grad-CAM evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from alexnet_study.analysis.gradcam import draw_overlay, grad_cam
from alexnet_study.analysis.layers import conv_layers
from alexnet_study.analysis.trained import TrainedModel, read_image


@dataclass
class Explanation:
    """One image: what it looked like to the network, its class probabilities and Grad-CAM map."""

    path: Path
    image: torch.Tensor  # (C, H, W) in [0, 1], as the network saw it
    probabilities: torch.Tensor  # (classes,)
    cam: torch.Tensor  # (H, W) in [0, 1], for the predicted class

    def top(self, classes: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        values, indices = self.probabilities.topk(min(k, self.probabilities.numel()))
        return [(classes[i], v) for i, v in zip(indices.tolist(), values.tolist(), strict=True)]


def explain(trained: TrainedModel, paths: Sequence[str | Path]) -> list[Explanation]:
    """Decode each file as the run's dataset decodes its images, classify it, and explain the
    predicted class with Grad-CAM at the last conv layer. Unreadable files raise a DataError."""
    images = torch.stack([read_image(path, trained.stored_size) for path in paths])
    inputs = trained.inputs(images)
    cams, probabilities = grad_cam(trained.net, inputs, layer=conv_layers(trained.net)[-1])
    shown = trained.display(inputs).cpu()
    return [Explanation(Path(path), shown[i], probabilities[i].cpu(), cams[i].cpu()) for i, path in enumerate(paths)]


def describe(explanation: Explanation, classes: Sequence[str], k: int = 5) -> str:
    """``file: class (p); top-5: a 0.81, b 0.10, ...`` on one line."""
    top = explanation.top(classes, k)
    ranked = ", ".join(f"{name} {p:.3f}" for name, p in top)
    return f"{explanation.path}: {top[0][0]} ({top[0][1]:.3f}); top-{len(top)}: {ranked}"


def explain_figure(explanations: Sequence[Explanation], classes: Sequence[str], k: int = 5) -> Figure:
    """One row per image: the image as the network saw it, the Grad-CAM overlay, the top-k bars."""
    rows = len(explanations)
    fig = Figure(figsize=(9.0, 2.6 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 3, width_ratios=[1, 1, 1.4])
    for row, explanation in enumerate(explanations):
        top = explanation.top(classes, k)
        draw_overlay(fig.add_subplot(grid[row, 0]), explanation.image, None, explanation.path.name)
        draw_overlay(fig.add_subplot(grid[row, 1]), explanation.image, explanation.cam,
                     f"Grad-CAM: {top[0][0]} {top[0][1]:.2f}")  # fmt: skip
        ax = fig.add_subplot(grid[row, 2])
        positions = np.arange(len(top))
        ax.barh(positions, [p for _, p in top], color="#4C72B0")
        ax.set_yticks(positions, [name for name, _ in top], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"top-{len(top)}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    return fig
