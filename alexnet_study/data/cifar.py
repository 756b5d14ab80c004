"""CIFAR-10 and CIFAR-100 through torchvision's download, held whole as uint8 tensors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from alexnet_study.data.base import Dataset, DeviceDataModule, Split
from alexnet_study.errors import ConfigError, DataError

# name -> (torchvision class, the folder the download extracts to, display name)
VARIANTS: dict[str, tuple[type[datasets.CIFAR10], str, str]] = {
    "cifar10": (datasets.CIFAR10, "cifar-10-batches-py", "CIFAR-10"),
    "cifar100": (datasets.CIFAR100, "cifar-100-python", "CIFAR-100"),
}


class CIFARDataModule(DeviceDataModule):
    """CIFAR-10/100: the official train split (minus a stratified validation share) and test split."""

    def __init__(
        self, variant: str = "cifar10", root: str | os.PathLike[str] = "data", download: bool = True, **kwargs: Any
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"data.variant={variant!r}: unknown; accepted: {', '.join(VARIANTS)}")
        super().__init__(**kwargs)
        self.variant = variant
        self.name = variant
        self.root = Path(root).expanduser()
        self.download = download

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                self._open(train, download=True)

    def load(self) -> Dataset:
        train, test = self._open(True, download=False), self._open(False, download=False)
        return Dataset(
            train=_to_split(train), test=_to_split(test), classes=list(train.classes),
            info={"root": str(self.root), "files": len(train.data) + len(test.data)},
        )  # fmt: skip

    def _open(self, train: bool, download: bool) -> datasets.CIFAR10:
        cls, folder, title = VARIANTS[self.variant]
        try:
            return cls(str(self.root), train=train, download=download)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; missing/corrupt files: RuntimeError
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            how = "could not be downloaded" if download else "is missing or corrupt (data.download=false)"
            raise DataError(
                f"{title} is not in {self.root.resolve() / folder} and {how} ({reason}). Put the extracted {folder} folder "
                f"under data.root (now {self.root}), or train on local images with data=image_folder "
                "data.root=<train/ test/ class folders>, or try the pipeline offline with data=synthetic"
            ) from err


def _to_split(dataset: datasets.CIFAR10) -> Split:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(dataset.targets, dtype=torch.long))
