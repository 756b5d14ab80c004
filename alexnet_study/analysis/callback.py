"""The Lightning callback that draws the views after a run's test (the ``analysis=`` config group)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from alexnet_study.analysis.evaluation import Evaluation
from alexnet_study.analysis.trained import TrainedModel
from alexnet_study.analysis.views import ViewSettings, write_views
from alexnet_study.data.base import DeviceDataModule

log = logging.getLogger(__name__)


class AnalysisViews(L.Callback):
    """After testing (the tested, i.e. best, weights), writes into ``output_dir`` and TensorBoard:
    ``filters_conv1.png``, ``activations.png``, ``gradcam.png``, ``mistakes.png`` and
    ``confusion_matrix.png`` (:mod:`alexnet_study.analysis.views`).

    The mistakes come from the test loop itself: the logits of each test batch are kept on the
    device as they pass (a running top-k, no host sync), so no second pass over the test set is
    needed. Under DDP each process keeps its own share's, and rank zero draws the views from all of
    them (:func:`gathered`). Drawing never fails a run: an error is logged.
    """

    def __init__(self, output_dir: str | Path, **settings: Any) -> None:
        self.output_dir = Path(output_dir)
        self.settings = ViewSettings.of(settings)
        self._evaluation: Evaluation | None = None
        self._logits: torch.Tensor | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(trainer.datamodule, DeviceDataModule):
            return
        self._evaluation = Evaluation(trainer.datamodule.num_classes, keep=self.settings.mistakes)
        self._hook = pl_module.register_forward_hook(self._keep_logits)

    def _keep_logits(self, _module: Any, _inputs: Any, logits: torch.Tensor) -> None:
        self._logits = logits

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        if self._evaluation is not None and self._logits is not None:
            images, labels = batch
            self._evaluation.update(images, self._logits, labels)
            self._logits = None

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        evaluation, self._evaluation = self._evaluation, None
        if evaluation is None:
            return
        evaluation = gathered(evaluation)
        if not trainer.is_global_zero:
            return
        started = time.perf_counter()
        try:
            report = getattr(pl_module, "test_report", {}) or {}
            trained = TrainedModel.from_datamodule(
                getattr(pl_module, "net", pl_module),
                trainer.datamodule,
                pl_module.device,
                confusion=report.get("confusion_matrix"),
            )
            seconds = write_views(trained, self.output_dir, self.settings, evaluation, trainer.loggers,
                                  trainer.global_step)  # fmt: skip
        except Exception:  # the run's results are already recorded: a drawing bug must not fail it
            log.exception("analysis views failed (the run's metrics and checkpoints are unaffected)")
            return
        timing = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
        log.info(
            "analysis views of %d test images in %s (%.1f s: %s)",
            evaluation.images_seen, self.output_dir, time.perf_counter() - started, timing,
        )  # fmt: skip


def gathered(evaluation: Evaluation) -> Evaluation:
    """Under DDP, every process's :class:`Evaluation` merged into rank zero's (each test image is seen by
    one process); ``evaluation`` itself in a single process. Every process must call it."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return evaluation
    states: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, evaluation.state())  # a few images per process: small
    if torch.distributed.get_rank() != 0:
        return evaluation
    for state in states[1:]:
        evaluation.merge(state)
    return evaluation
