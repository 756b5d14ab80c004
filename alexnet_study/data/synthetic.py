"""Learnable synthetic images generated in memory: the offline smoke-test dataset."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from alexnet_study.data.base import Dataset, DeviceDataModule, Split
from alexnet_study.errors import check_int, check_number


class SyntheticDataModule(DeviceDataModule):
    """Each class is a random low-frequency colour pattern; samples add Gaussian pixel noise.

    Deterministic for a given ``data_seed``, and easy enough that a few hundred steps of a small
    network reach accuracy far above chance, so smoke runs show whether training works.
    """

    name = "synthetic"

    def __init__(
        self,
        train_size: int = 1024,
        val_size: int = 256,
        test_size: int = 256,
        stored_size: int = 32,
        noise: float = 48.0,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for key, value in (("train_size", train_size), ("stored_size", stored_size)):
            check_int(f"data.{key}", value, 1)
        for key, value in (("val_size", val_size), ("test_size", test_size)):
            check_int(f"data.{key}", value, 0)
        check_number("data.noise", noise, 0, hint="(the pixel noise's standard deviation)")
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.stored_size, self.noise, self.data_seed = stored_size, noise, data_seed

    def load(self) -> Dataset:
        generator = torch.Generator().manual_seed(self.data_seed)
        coarse = torch.rand(self.num_classes, 3, 4, 4, generator=generator)
        prototypes = F.interpolate(coarse, size=self.stored_size, mode="bilinear", align_corners=False) * 255.0
        splits = {name: self._sample(prototypes, size, generator) for name, size in self.sizes.items() if size > 0}
        return Dataset(
            train=splits["train"], val=splits.get("val"), test=splits.get("test"),
            classes=[f"class_{i}" for i in range(self.num_classes)], info={"files": 0, "generator_seed": self.data_seed},
        )  # fmt: skip

    def _sample(self, prototypes: torch.Tensor, size: int, generator: torch.Generator) -> Split:
        labels = torch.arange(size) % self.num_classes
        labels = labels[torch.randperm(size, generator=generator)]
        images = prototypes[labels] + self.noise * torch.randn(size, *prototypes.shape[1:], generator=generator)
        return Split(images.clamp(0, 255).to(torch.uint8), labels)
