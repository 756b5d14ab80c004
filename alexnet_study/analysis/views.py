"""Every view of a trained network, by name: drawn for a notebook, or written as PNGs (and to
TensorBoard) into a run's ``analysis/`` folder by the callback and by ``python -m alexnet_study.inspect``."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from matplotlib.figure import Figure
from torch import nn

from alexnet_study.analysis.activations import activation_maps, activations_figure
from alexnet_study.analysis.confusion import confusion_figure
from alexnet_study.analysis.evaluation import Evaluation
from alexnet_study.analysis.filters import filters_figure
from alexnet_study.analysis.gradcam import eager_forward, grad_cam, grad_cam_figure
from alexnet_study.analysis.layers import conv_layers, spread
from alexnet_study.analysis.mistakes import mistakes_figure
from alexnet_study.analysis.trained import TrainedModel
from alexnet_study.errors import ConfigError, DataError, check_int
from alexnet_study.report import plots

log = logging.getLogger(__name__)

# View name -> the PNG it is written to.
FILES = {
    "filters": "filters_conv1.png",
    "activations": "activations.png",
    "gradcam": "gradcam.png",
    "mistakes": "mistakes.png",
    "confusion": "confusion_matrix.png",
}
TIMINGS_FILE = "timings.json"


@dataclass(frozen=True)
class ViewSettings:
    """How much each view shows (the ``analysis=`` config group's keys)."""

    cam_images: int = 8  # test images with their Grad-CAM
    activation_images: int = 2  # test images followed through the conv layers
    channels: int = 6  # strongest channels shown per layer
    max_layers: int = 5  # conv layers in the activation view (evenly spaced)
    mistakes: int = 16  # most confident mistakes shown
    max_images: int = 2000  # test images evaluated when the run's own test pass is not at hand
    batch_size: int = 256  # images per forward pass of that evaluation

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            check_int(f"analysis.{key}", value, 0 if key == "mistakes" else 1)

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> ViewSettings:
        """The ``analysis=`` group's keys as settings; a key that is none of them is a :class:`ConfigError`."""
        known = [f.name for f in fields(cls)]
        for key, value in settings.items():
            if key not in known:
                raise ConfigError(
                    f"analysis.{key}={value!r}: not a setting of the analysis views; accepted: {', '.join(known)}"
                )
        return cls(**settings)


def sample(labels: torch.Tensor, count: int) -> torch.Tensor:
    """A fixed set of ``count`` indices: the first image of each class, then the second of each, ..."""
    seen: Counter[int] = Counter()
    keys = []
    for index, label in enumerate(labels.tolist()):
        keys.append((seen[label], label, index))
        seen[label] += 1
    return torch.tensor([index for _, _, index in sorted(keys)[:count]], dtype=torch.long)


def _net(subject: TrainedModel | nn.Module) -> nn.Module:
    return subject.net if isinstance(subject, TrainedModel) else subject


def _images(trained: TrainedModel, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fixed images of the trained model's split, as network inputs, and their labels."""
    if trained.images is None:
        raise DataError("this view needs the run's test images, and its dataset could not be read")
    index = sample(trained.images.labels, count)
    return trained.inputs(trained.images.images[index]), trained.images.labels[index]


def filters_view(subject: TrainedModel | nn.Module) -> Figure:
    """The first conv layer's filters, each as an RGB tile scaled to its own range."""
    layer = conv_layers(_net(subject))[0]
    return filters_figure(layer.conv.weight, layer.name)


def activations_view(trained: TrainedModel, settings: ViewSettings = ViewSettings()) -> Figure:
    """A few test images through the conv layers: each layer's strongest channels."""
    inputs, _ = _images(trained, settings.activation_images)
    layers = spread(conv_layers(trained.net), settings.max_layers)
    maps = activation_maps(trained.net, inputs, layers)
    return activations_figure(trained.display(inputs), maps, settings.channels)


def grad_cam_view(trained: TrainedModel, settings: ViewSettings = ViewSettings()) -> Figure:
    """Grad-CAM at the last conv layer for a fixed set of test images: true and predicted class, confidence."""
    inputs, labels = _images(trained, settings.cam_images)
    layer = conv_layers(trained.net)[-1]
    cams, probabilities = grad_cam(trained.net, inputs, layer=layer)
    confidence, predicted = probabilities.max(1)
    names = trained.classes
    titles = [
        f"true {names[t]}\npred {names[p]} {c:.2f}"
        for t, p, c in zip(labels.tolist(), predicted.tolist(), confidence.tolist(), strict=True)
    ]
    return grad_cam_figure(trained.display(inputs), cams, titles, layer.name)


def evaluate(trained: TrainedModel, settings: ViewSettings = ViewSettings()) -> Evaluation:
    """A pass over (a seeded random subset of at most ``settings.max_images``) test images."""
    if trained.images is None:
        raise DataError("this view needs the run's test images, and its dataset could not be read")
    split = trained.images
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[: settings.max_images].sort().values
    evaluation = Evaluation(len(trained.classes), keep=settings.mistakes)
    was_training = trained.net.training
    trained.net.eval()
    try:
        with torch.no_grad():
            for batch in chosen.split(settings.batch_size):
                inputs = trained.inputs(split.images[batch])
                evaluation.update(inputs, eager_forward(trained.net, inputs), split.labels[batch])
    finally:
        trained.net.train(was_training)
    return evaluation


def mistakes_view(trained: TrainedModel, evaluation: Evaluation | None = None) -> Figure:
    """The most confidently wrong test images, with true and predicted class and confidence."""
    evaluation = evaluation or evaluate(trained)
    return mistakes_figure(evaluation.mistakes(), trained.classes, trained.display, evaluation.images_seen)


def confusion_view(trained: TrainedModel, evaluation: Evaluation | None = None) -> Figure:
    """The confusion matrix normalized per true class: the run's own (every test image) when known."""
    counts = trained.confusion or (evaluation or evaluate(trained)).confusion_matrix()
    return confusion_figure(counts, trained.classes)


def view_makers(
    trained: TrainedModel, settings: ViewSettings = ViewSettings(), evaluation: Evaluation | None = None
) -> dict[str, Callable[[], Figure]]:
    """The views this trained model supports, by name, each drawn when called. Without conv layers
    the filter, activation and Grad-CAM views are left out (a warning says so); without test images,
    every view but the filters (and a confusion matrix the run recorded)."""
    found: dict[str, Evaluation] = {} if evaluation is None else {"": evaluation}

    def evaluated() -> Evaluation:  # one pass, shared by the mistakes and the confusion matrix
        if "" not in found:
            found[""] = evaluate(trained, settings)
        return found[""]

    has_images = trained.images is not None
    makers: dict[str, Callable[[], Figure]] = {}
    try:
        conv_layers(trained.net)
    except ConfigError as err:
        log.warning("%s", err)
    else:
        makers["filters"] = lambda: filters_view(trained)
        if has_images:
            makers["activations"] = lambda: activations_view(trained, settings)
            makers["gradcam"] = lambda: grad_cam_view(trained, settings)
    if has_images:
        makers["mistakes"] = lambda: mistakes_view(trained, evaluated())
    if has_images or trained.confusion is not None:
        makers["confusion"] = lambda: confusion_view(trained, None if trained.confusion else evaluated())
    return makers


def analysis_views(trained: TrainedModel, settings: ViewSettings = ViewSettings()) -> dict[str, Figure]:
    """Every view this trained model supports, as figures by name (for a notebook)."""
    return {name: make() for name, make in view_makers(trained, settings).items()}


def write_views(
    trained: TrainedModel,
    output_dir: str | Path,
    settings: ViewSettings = ViewSettings(),
    evaluation: Evaluation | None = None,
    loggers: Sequence[Logger] = (),
    step: int = 0,
) -> dict[str, float]:
    """Draw every view, write each as a PNG into ``output_dir`` (and to each TensorBoard logger's
    Images tab as ``analysis/<name>``) and return the seconds each took (``timings.json``)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    for name, make in view_makers(trained, settings, evaluation).items():
        started = time.perf_counter()
        figure = make()
        plots.save(figure, output_dir / FILES[name])
        for logger in loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"analysis/{name}", plots.to_array(figure), step, dataformats="HWC")
        seconds[name] = round(time.perf_counter() - started, 3)
    record: dict[str, Any] = {"device": str(trained.device), "seconds": seconds, "settings": asdict(settings)}
    (output_dir / TIMINGS_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return seconds
