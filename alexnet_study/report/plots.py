"""Figures: one implementation for run dirs, TensorBoard, sweep reports and notebooks.

Dataset views (class distribution, image grids) and sweep figures (training curves, bar
charts with optional error bars, heatmaps of 2-D grids).

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
from matplotlib.ticker import MaxNLocator

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


CURVE_PANELS = (
    ("train/loss", "train loss"),
    ("val/loss", "val loss"),
    ("train/acc", "train acc"),
    ("val/acc", "val acc"),
)


def training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """2x2 panels (train loss, val loss, train acc, val acc) per epoch, one line per run."""
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    for ax, (key, title) in zip(axes.flat, CURVE_PANELS, strict=True):
        for label, history in histories.items():
            points = [(r["epoch"] + 1, r[key]) for r in history if r.get(key) is not None]
            if points:
                epochs, values = zip(*points, strict=True)
                ax.plot(epochs, values, marker="o" if len(points) < 15 else None, markersize=3, label=label)
        _plain_axis(ax)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        columns = max(1, min(4, len(labels), 150 // max(len(label) for label in labels)))
        fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8)
    return fig


def wrap_label(label: str, width: int = 36) -> str:
    """``label``'s comma-separated parts (``key=value, ...``) on lines of about ``width`` characters."""
    lines: list[str] = []
    for part in label.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return "\n".join(lines)


def bars(
    labels: Sequence[str],
    panels: Mapping[str, Sequence[float | None]],
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> Figure:
    """One horizontal bar chart per panel (e.g. best val acc, training time), one bar per label,
    with error bars where ``errors`` has them (mean +/- std over repeats)."""
    # Long labels (a search trial's five settings) are wrapped, or they squeeze the bars to nothing.
    labels = [wrap_label(label) for label in labels]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(5.5 * len(panels), 1.0 + 0.2 * lines + 0.15 * len(labels)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    positions = np.arange(len(labels))
    for ax, (title, values) in zip(axes, panels.items(), strict=True):
        heights = [np.nan if v is None else v for v in values]
        spread = None
        if errors and title in errors:
            spread = [0.0 if e is None else e for e in errors[title]]
        ax.barh(positions, heights, xerr=spread, capsize=3, color="#4C72B0")
        ax.set_yticks(positions, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        for y, value in zip(positions, heights, strict=True):
            if not np.isnan(value):
                ax.annotate(
                    f"{value:.3g}", (value, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
                )
    return fig


def heatmap(
    rows: Sequence[str], columns: Sequence[str], panels: Mapping[str, Sequence[Sequence[float | None]]],
    row_title: str, column_title: str,
) -> Figure:  # fmt: skip
    """One annotated heatmap per panel over a 2-D grid (e.g. conv depth x FC depth)."""
    fig = Figure(figsize=(4.5 * len(panels) + 1, 1.5 + 0.5 * len(rows)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, grid) in zip(axes, panels.items(), strict=True):
        values = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(column_title)
        ax.set_ylabel(row_title)
        ax.set_title(title)
        for (i, j), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


# Line styles after the colours run out, and so that arms with identical curves stay distinguishable.
ARM_STYLES = ("-", "--", "-.", ":")
NOT_LEARNED = "did not learn"


def arm_curves(
    arms: Mapping[str, Sequence[Sequence[Mapping[str, float]]]],
    chance: float | None = None,
    not_learned: Sequence[str] = (),
) -> Figure:
    """2x2 panels (train loss, val loss, train acc, val acc) per epoch: each arm's mean over its runs,
    with a band from the lowest to the highest run where it has several; a dashed chance line on the
    accuracy panels; arms in ``not_learned`` drawn thin and dashed, marked in the legend."""
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    last = 1
    for ax, (key, title) in zip(axes.flat, CURVE_PANELS, strict=True):
        for i, (label, runs) in enumerate(arms.items()):
            epochs, mean, low, high = _mean_curve(runs, key)
            if not epochs:
                continue
            last = max(last, epochs[-1])
            flat = label in not_learned
            # An arm that did not learn: dashed and thinner, so that several such arms lying on top of
            # each other (all at chance) stay visible and are not read as results.
            style = {"color": f"C{i % 10}", "linewidth": 1.0 if flat else 1.8,
                     "linestyle": ARM_STYLES[1 + i % 3] if flat else ARM_STYLES[(i // 10) % len(ARM_STYLES)]}  # fmt: skip
            shown = f"{label} ({NOT_LEARNED})" if flat else label
            ax.plot(epochs, mean, marker="o" if len(epochs) < 15 else None, markersize=3, label=shown, **style)
            if len(runs) > 1:
                ax.fill_between(epochs, low, high, color=style["color"], alpha=0.15, linewidth=0)
                if len(epochs) == 1:  # a band needs two epochs: the spread as a line
                    ax.vlines(epochs, low, high, color=style["color"], alpha=0.4)
        if not ax.lines:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="0.5")
        elif chance is not None and key.endswith("acc"):
            ax.axhline(chance, color="k", linestyle="--", linewidth=0.8, label="chance")
        _plain_axis(ax)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.flat:
        ax.set_xlim(0.5, last + 0.5)
        if last <= 10:  # few epochs: a tick at each (the locator falls back to fractions below two)
            ax.set_xticks(range(1, last + 1))
    # Every arm once, whichever panel has its line (a panel may lack a metric).
    legend = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)}
    legend.update({"chance": legend.pop("chance")} if "chance" in legend else {})  # last, after the arms
    handles, labels = list(legend.values()), list(legend)
    if handles:
        columns = max(1, min(3, len(labels), 150 // max(len(label) for label in labels)))
        fig.legend(handles, labels, loc="outside lower center", ncol=columns, fontsize=8)
    return fig


def _mean_curve(runs: Sequence[Sequence[Mapping[str, float]]], key: str) -> tuple[list[int], ...]:
    """(epochs, mean, min, max) of ``key`` over ``runs`` at each epoch that any run reached."""
    by_epoch: dict[int, list[float]] = {}
    for history in runs:
        for record in history:
            if record.get(key) is not None:
                by_epoch.setdefault(int(record["epoch"]) + 1, []).append(float(record[key]))
    epochs = sorted(by_epoch)
    return (
        epochs,
        [float(np.mean(by_epoch[e])) for e in epochs],
        [min(by_epoch[e]) for e in epochs],
        [max(by_epoch[e]) for e in epochs],
    )


def _plain_axis(ax: object) -> None:
    """Tick labels as plain numbers: no ``1e-5+2.8332`` offset above a flat curve."""
    ax.ticklabel_format(axis="y", useOffset=False)  # type: ignore[attr-defined]


def accuracy_bars(
    labels: Sequence[str],
    panels: Mapping[str, tuple[Sequence[float | None], Sequence[float | None]]],
    chance: float | None = None,
    notes: Mapping[int, str] | None = None,
) -> Figure:
    """Horizontal bars of accuracy per arm (``{title: (means, 95% CI half-widths)}``) with CI whiskers,
    a dashed chance line, the value at each bar and ``notes`` (e.g. did not learn) after it."""
    labels = [wrap_label(label, 40) for label in labels]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(5.5 * len(panels) + 1.5, 1.2 + 0.22 * lines + 0.2 * len(labels)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    positions = np.arange(len(labels))
    for ax, (title, (means, cis)) in zip(axes, panels.items(), strict=True):
        heights = np.array([np.nan if v is None else v for v in means], dtype=float)
        spread = np.array([0.0 if e is None else e for e in cis], dtype=float)
        # An accuracy lies in [0, 1]: whiskers stop there (a t interval of two runs can be wider);
        # the labels keep the interval's full half-width.
        low = np.clip(heights - spread, 0.0, 1.0)
        high = np.clip(heights + spread, 0.0, 1.0)
        whiskers = np.nan_to_num(np.vstack([heights - low, high - heights]))
        ax.barh(positions, heights, xerr=whiskers, capsize=4, color="#4C72B0", error_kw={"elinewidth": 1.2})
        if chance is not None:
            ax.axvline(chance, color="k", linestyle="--", linewidth=1.0, label=f"chance ({chance:.3g})")
            ax.legend(fontsize=8, loc="lower right")
        top = np.nanmax(np.concatenate([high, [chance or 0.0, 0.01]]))
        ax.set_xlim(0, min(1.0, top * 1.3))
        for y, (value, err) in enumerate(zip(heights, spread, strict=True)):
            if np.isnan(value):
                continue
            text = f"{value:.3f}" + (f" ± {err:.3f}" if err else "") + (f"  {notes[y]}" if notes and y in notes else "")
            ax.annotate(text, (high[y], y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("accuracy (mean, whiskers: 95% CI)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    return fig


def confusion_matrix(counts: Sequence[Sequence[float]], classes: Sequence[str], title: str) -> Figure:
    """A confusion-matrix heatmap: rows are true classes normalized to 1 (recall), class names on both
    axes; the values written in the cells for up to 20 classes."""
    matrix = np.asarray(counts, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(classes)
    size = min(16.0, max(4.5, 0.45 * n + 2))
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fontsize = 9 if n <= 10 else 7 if n <= 30 else 4
    ax.set_xticks(range(n), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), classes, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    if n <= 20:
        for (i, j), value in np.ndenumerate(rates):
            if value > 0.005:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if value > 0.5 else "k")  # fmt: skip
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig
