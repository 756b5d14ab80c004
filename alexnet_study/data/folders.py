"""Class-folder trees: ``train/<class>/*``, optional ``val/<class>/*`` and ``test/<class>/*``.

``image_folder`` reads any such tree; ``hymenoptera`` (ants vs bees) is one, with a download.
"""

from __future__ import annotations

import os
from typing import Any

from torchvision.datasets.utils import download_and_extract_archive

from alexnet_study.data.download import download_or_explain
from alexnet_study.data.files import SPLITS, FileList, ImageFilesDataModule, class_folders, label_folders
from alexnet_study.errors import DataError

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"


class ImageFolderDataModule(ImageFilesDataModule):
    """Any ``train/ val/ [test/]`` class-folder tree; ``val/`` may be absent (carved from train).

    Class names and order come from ``train/``'s folders; a class folder in ``val/`` or
    ``test/`` that ``train/`` lacks is an error.
    """

    name = "image_folder"

    def list_files(self) -> FileList:
        if not (self.root / "train").is_dir():
            raise DataError(
                f"data.root={self.root}: no train/ folder there; expected train/<class>/<image>, "
                "optionally val/<class>/... and test/<class>/... (point data.root at such a tree)"
            )
        classes = class_folders(self.root / "train")
        splits = {}
        for split in SPLITS:
            split_dir = self.root / split
            if not split_dir.is_dir():
                continue
            unknown = sorted(set(class_folders(split_dir)) - set(classes))
            if unknown:
                raise DataError(f"{split_dir}: class folder(s) {unknown} are not in the training split's classes")
            splits[split] = label_folders(split_dir, classes)
        return FileList(classes, splits)


class HymenopteraDataModule(ImageFolderDataModule):
    """The ants-vs-bees transfer-learning set (an ImageNet subset): ``train/`` and ``val/``.

    It has no test split, so by default the validation split is also reported as the test set,
    as in PyTorch's transfer-learning tutorial. ``download`` fetches the tutorial's zip into
    ``root``'s parent when ``root`` is missing.
    """

    name = "hymenoptera"

    def __init__(self, root: str | os.PathLike[str], download: bool = True, val_as_test: bool = True, **kwargs: Any):
        super().__init__(root, val_as_test=val_as_test, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        if self.download and not (self.root / "train").is_dir():
            target = self.root.parent
            download_or_explain(
                "The ants/bees (hymenoptera) set",
                self.root,
                lambda: download_and_extract_archive(HYMENOPTERA_URL, str(target)),
                f"Extract hymenoptera_data.zip (train/ and val/ class folders) to {self.root}",
            )
            if not (self.root / "train").is_dir() and (target / "hymenoptera_data" / "train").is_dir():
                raise DataError(
                    f"the download extracted to {target / 'hymenoptera_data'}; set data.root to it "
                    f"(data.root is {self.root})"
                )
