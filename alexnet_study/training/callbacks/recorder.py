"""Callbacks that record a run: per-epoch wall time, training throughput, the metrics history, and the
per-epoch logging of short runs."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


TIMES = ("epoch_s", "train_s", "images_per_s")


class EpochRecorder(L.Callback):
    """Logs ``time/epoch_s`` (wall time of an epoch, validation included), ``time/train_s`` and
    ``time/images_per_s`` (training batches only: forward, backward, optimizer step), and keeps
    one record per epoch (those times plus every epoch-level metric) in ``history``.

    It synchronizes the device twice per epoch (at its start and after its last training
    batch), never per step. Under DDP the record is the job's: the slowest process's times and
    all processes' images (two small all-reduces per epoch).
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._epoch_start = self._train_end = 0.0
        self._images = 0
        self.batches_trained = 0  # by this attempt (not in checkpoints): 0 when a resumed run had nothing left

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: time it from here
        # (its record then covers the part after the resume).
        self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _synchronize(pl_module.device)
        self._epoch_start = time.perf_counter()
        self._train_end = 0.0
        self._images = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += int(batch[0].shape[0])  # shape is host metadata: no sync
        self.batches_trained += 1
        if batch_idx + 1 >= trainer.num_training_batches:
            _synchronize(pl_module.device)
            self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        epoch_s, train_s, images = now - self._epoch_start, (self._train_end or now) - self._epoch_start, self._images
        if trainer.world_size > 1:
            # One record for the whole DDP job: an epoch lasts as long as its slowest process, and
            # every process trained on its own share of the images.
            times = torch.tensor([epoch_s, train_s], dtype=torch.float64, device=pl_module.device)
            epoch_s, train_s = trainer.strategy.reduce(times, reduce_op="max").tolist()
            count = torch.tensor(float(images), dtype=torch.float64, device=pl_module.device)
            images = int(trainer.strategy.reduce(count, reduce_op="sum").item())
        record = {
            "epoch": float(trainer.current_epoch),
            "epoch_s": epoch_s,
            "train_s": train_s,
            "images": float(images),
            "images_per_s": images / train_s if train_s > 0 else 0.0,
        }
        for name, value in trainer.callback_metrics.items():
            if value.numel() == 1 and not name.endswith("_step"):
                record[name.removesuffix("_epoch")] = float(value)
        # This epoch's own times: callback_metrics still holds the previous epoch's time/* (logged below).
        for name in TIMES:
            record[f"time/{name}"] = record[name]
        self.history.append(record)
        # Equal on every process by now; sync_dist only spares the warning Lightning gives under DDP.
        for name in TIMES:
            pl_module.log(f"time/{name}", record[name], sync_dist=True, reduce_fx="max")

    # In checkpoints: a resumed run's metrics.json has the whole history, not just its own epochs.
    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def summary(self) -> dict[str, float]:
        """Totals over the fit: training seconds, images and images/s (first epoch included)."""
        train_s = sum(r["train_s"] for r in self.history)
        images = sum(r["images"] for r in self.history)
        steady = self.history[1:] or self.history
        steady_s = sum(r["train_s"] for r in steady)
        return {
            "train_time_s": train_s,
            "images_seen": images,
            "images_per_s": images / train_s if train_s else 0.0,
            # the first epoch pays for warm-up (cuDNN autotuning, compilation): report both
            "images_per_s_after_first_epoch": sum(r["images"] for r in steady) / steady_s if steady_s else 0.0,
        }


class LogEveryEpoch(L.Callback):
    """Lowers ``trainer.log_every_n_steps`` to the number of training batches when an epoch has
    fewer: step-level values (``lr``, ``train/loss_step``) then reach the loggers at least once
    per epoch instead of never. Lightning reads them back from the device only at those steps,
    never per step."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning warns about the interval when it first counts the batches, before on_train_start.
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = trainer.num_training_batches
        if isinstance(batches, int) and 0 < batches < trainer.log_every_n_steps:
            log.info(
                "log_every_n_steps=%d > %d training batches: logging every %d",
                trainer.log_every_n_steps,
                batches,
                batches,
            )
            trainer.log_every_n_steps = batches
