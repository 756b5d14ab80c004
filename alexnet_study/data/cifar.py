"""CIFAR-10 and CIFAR-100 through torchvision's download, held whole as uint8 tensors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets

from alexnet_study.data.base import Dataset, DeviceDataModule, Split
from alexnet_study.data.download import Target, download_or_explain, missing_dataset
from alexnet_study.errors import ConfigError

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
        cls, folder, title = VARIANTS[self.variant]
        if self.download and not (self.root / folder).is_dir():
            # One archive holds both splits (a corrupt copy is reported when it is opened).
            fetch = lambda: cls(str(self.root), train=False, download=True)  # noqa: E731
            # data.root is a shared data folder (the default holds every dataset): only its images are off limits.
            download_or_explain(title, self.root / folder, fetch, self._place_by_hand(), Target(self.root, self.root))

    def load(self) -> Dataset:
        train, test = self._open(train=True), self._open(train=False)
        return Dataset(
            train=_to_split(train), test=_to_split(test), classes=list(train.classes),
            info={"root": str(self.root), "files": len(train.data) + len(test.data)},
        )  # fmt: skip

    def _place_by_hand(self) -> str:
        return f"Put the extracted {VARIANTS[self.variant][1]} folder under data.root (now {self.root})"

    def _open(self, train: bool) -> datasets.CIFAR10:
        cls, folder, title = VARIANTS[self.variant]
        try:
            return cls(str(self.root), train=train, download=False)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            why = "is missing or corrupt" + ("" if self.download else " (data.download=false)")
            raise missing_dataset(title, self.root / folder, why, self._place_by_hand()) from err


def _to_split(dataset: datasets.CIFAR10) -> Split:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(dataset.targets, dtype=torch.long))
