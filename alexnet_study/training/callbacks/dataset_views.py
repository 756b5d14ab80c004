"""The dataset views a run starts with: class histograms and sample grids, in the run dir and TensorBoard."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from alexnet_study.data.base import DeviceDataModule
from alexnet_study.report import plots

log = logging.getLogger(__name__)


class DatasetViews(L.Callback):
    """At the start of training, shows what the model will see.

    Logs to TensorBoard (``data/class_distribution``, ``data/train_samples``) and saves as PNGs
    in the run dir: the class distribution of each split, and a grid of training samples after
    the device transform (augmented, then denormalized), titled with their class names.
    Its random draws use a forked RNG, so training randomness is the same with or without it.
    """

    def __init__(self, num_samples: int = 32, columns: int = 8) -> None:
        self.num_samples = num_samples
        self.columns = columns

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not trainer.is_global_zero or not isinstance(datamodule, DeviceDataModule) or datamodule.dataset is None:
            return
        classes = datamodule.classes
        counts = {
            name: torch.bincount(split.labels, minlength=len(classes)).tolist()
            for name, split in datamodule.splits().items()
        }
        distribution = plots.class_distribution(counts, classes)

        train = datamodule.splits()["train"]
        index = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: self.num_samples]
        transform = datamodule.transform.to(pl_module.device)
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            shown = transform.denormalize(transform(train.images[index].to(pl_module.device), train=True))
        samples = plots.image_grid(shown, [classes[i] for i in train.labels[index].tolist()], self.columns)

        output_dir = Path(trainer.default_root_dir)
        for tag, figure in (("class_distribution", distribution), ("train_samples", samples)):
            plots.save(figure, output_dir / f"{tag}.png")
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image(f"data/{tag}", plots.to_array(figure), 0, dataformats="HWC")
