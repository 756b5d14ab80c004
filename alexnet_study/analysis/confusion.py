"""The confusion matrix as a heatmap: which classes are taken for which."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

# Beyond this many classes the cells are too small to write their values in.
MAX_ANNOTATED_CLASSES = 20
# Beyond this many, the class names are left off the axes (they would overlap).
MAX_NAMED_CLASSES = 60


def normalize_rows(counts: Sequence[Sequence[int]]) -> np.ndarray:
    """Each row (a true class) divided by its total: the share of that class predicted as each class."""
    matrix = np.asarray(counts, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def confusion_figure(counts: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    """A heatmap of the confusion matrix normalized per true class (rows sum to 1; the diagonal is
    each class's recall), with the class names on both axes."""
    shares = normalize_rows(counts)
    n = len(classes)
    side = min(16.0, max(4.5, 0.45 * n + 2.0))
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if n <= MAX_NAMED_CLASSES:
        size = 8 if n <= 20 else 6
        ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 30, ha="center" if n > 6 else "right", fontsize=size)
        ax.set_yticks(range(n), classes, fontsize=size)
    if n <= MAX_ANNOTATED_CLASSES:
        for (i, j), value in np.ndenumerate(shares):
            if value >= 0.005:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w" if value > 0.5 else "k")
    total = int(np.asarray(counts).sum())
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix, normalized per true class ({total} test images)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return fig
