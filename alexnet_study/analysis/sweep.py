"""A sweep's arms side by side: each arm's first-layer filters, for the sweep report (``filters_by_arm.png``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from alexnet_study.analysis.filters import filters_side_by_side
from alexnet_study.analysis.trained import find_checkpoint
from alexnet_study.analysis.views import FILES
from alexnet_study.errors import StudyError

log = logging.getLogger(__name__)

FILTERS_BY_ARM = "filters_by_arm.png"
# More panels than this make each too small to read.
MAX_ARMS = 16


def first_layer_weight(job_dir: Path) -> torch.Tensor | None:
    """The first conv layer's weights from a run dir's checkpoint (the first 4-D tensor of the
    network's state, which is registered first), or ``None`` when there is no readable one."""
    try:
        path = find_checkpoint(job_dir)
        # mmap: only the tensor used here is read from disk.
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True).get("state_dict", {})
    except (StudyError, OSError, RuntimeError, AttributeError):
        return None
    return next((v.float().clone() for k, v in state.items() if k.startswith("net.") and v.dim() == 4), None)


def sweep_filters_figure(job_dirs: Sequence[str | Path], labels: Sequence[str]) -> Figure | None:
    """Each job's conv1 filters in a panel titled with its label: from its checkpoint, else from its
    ``analysis/filters_conv1.png``. ``None`` when no job has either."""
    panels: list[torch.Tensor | np.ndarray] = []
    titles: list[str] = []
    for job_dir, label in zip(job_dirs, labels, strict=True):
        weight = first_layer_weight(Path(job_dir))
        png = Path(job_dir) / "analysis" / FILES["filters"]
        if weight is None and png.is_file():
            weight = imread(png)
        if weight is not None:
            panels.append(weight)
            titles.append(label)
    return filters_side_by_side(panels, titles) if panels else None


def filters_by_arm(arms: Sequence[tuple[str, Sequence[Path]]]) -> Figure | None:
    """:func:`sweep_filters_figure` for a sweep's arms, given as (label, finished run dirs) in the
    report's order: the first run of each, at most :data:`MAX_ARMS`."""
    chosen = [(label, dirs[0]) for label, dirs in arms if dirs]
    if len(chosen) > MAX_ARMS:
        log.info("%s: the first %d of %d arms", FILTERS_BY_ARM, MAX_ARMS, len(chosen))
    chosen = chosen[:MAX_ARMS]
    return sweep_filters_figure([path for _, path in chosen], [label for label, _ in chosen]) if chosen else None
