"""The test images the network got wrong with the most confidence: label noise, look-alike classes, shortcuts."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from matplotlib.figure import Figure

from alexnet_study.analysis.evaluation import Mistake
from alexnet_study.report import plots


def mistakes_figure(
    mistakes: Sequence[Mistake],
    classes: Sequence[str],
    to_display: Callable[[torch.Tensor], torch.Tensor],
    images_seen: int,
    columns: int = 8,
) -> Figure:
    """A grid of mistakes (most confident first), titled ``true`` / ``predicted (confidence)``.

    ``to_display`` turns a batch of model inputs back into [0, 1] images (the transform's denormalize).
    """
    if not mistakes:
        fig = Figure(figsize=(5.0, 1.2), layout="constrained")
        fig.text(0.5, 0.5, f"no mistakes among {images_seen} test images", ha="center", va="center")
        return fig
    images = to_display(torch.stack([m.image for m in mistakes]).float())
    titles = [f"true {classes[m.label]}\npred {classes[m.predicted]} {m.confidence:.2f}" for m in mistakes]
    fig = plots.image_grid(images, titles, columns)
    fig.suptitle(f"the {len(mistakes)} most confident mistakes among {images_seen} test images", fontsize=10)
    return fig
