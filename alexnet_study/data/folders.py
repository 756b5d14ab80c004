"""Class-folder trees: ``train/<class>/*``, optional ``val/<class>/*`` and ``test/<class>/*``.

``image_folder`` reads any such tree; ``hymenoptera`` (ants vs bees) is one, with a download.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torchvision.datasets.utils import download_and_extract_archive

from alexnet_study.data.download import Target, download_or_explain
from alexnet_study.data.files import SPLITS, FileList, ImageFilesDataModule, class_folders, has_images, label_folders
from alexnet_study.errors import DataError

HYMENOPTERA_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
HYMENOPTERA_FOLDER = "hymenoptera_data"  # what the zip holds: hymenoptera_data/train/, hymenoptera_data/val/


def train_classes(root: str | os.PathLike[str], skip_bad_files: bool = False) -> list[str]:
    """The classes an image-folder tree at ``root`` trains on: the class folders of ``train/``
    (sorted; with ``skip_bad_files`` those without images are left out, as loading leaves them out).

    ``data.num_classes`` defaults to their count (``${count_classes:...}`` in ``conf/data/image_folder.yaml``).
    """
    train = Path(root).expanduser() / "train"
    if not train.is_dir():
        raise DataError(
            f"data.root={Path(root).expanduser()}: no train/ folder there; expected train/<class>/<image>, "
            "optionally val/<class>/... and test/<class>/... (point data.root at such a tree)"
        )
    classes = class_folders(train)
    return [name for name in classes if has_images(train / name)] if skip_bad_files else classes


class ImageFolderDataModule(ImageFilesDataModule):
    """Any ``train/ val/ [test/]`` class-folder tree; ``val/`` may be absent (carved from train).

    Class names and order come from ``train/``'s folders (:func:`train_classes`); a class folder
    in ``val/`` or ``test/`` that ``train/`` lacks is an error.
    """

    name = "image_folder"

    def list_files(self) -> FileList:
        classes = train_classes(self.root)  # empty ones are reported or left out after listing
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
    ``root`` (a new or empty folder) when ``root`` has no ``train/``.
    """

    name = "hymenoptera"

    def __init__(self, root: str | os.PathLike[str], download: bool = True, val_as_test: bool = True, **kwargs: Any):
        super().__init__(root, val_as_test=val_as_test, **kwargs)
        self.download = download

    def prepare_data(self) -> None:
        if not self.download or (self.root / "train").is_dir():
            return
        zip_name = HYMENOPTERA_URL.rsplit("/", 1)[1]
        download_or_explain(
            "ants/bees (hymenoptera)",
            self.root,
            self._fetch,
            f"Extract {zip_name} (train/ and val/ class folders) to {self.root}",
            Target(self.root, self.root, frozenset({zip_name, HYMENOPTERA_FOLDER}), tree=("train", "val")),
        )

    def _fetch(self) -> None:
        """Download and extract the zip into root, then move its train/ and val/ up into root."""
        download_and_extract_archive(HYMENOPTERA_URL, str(self.root), remove_finished=True)
        extracted = self.root / HYMENOPTERA_FOLDER
        for split in ("train", "val"):
            shutil.move(extracted / split, self.root / split)
        shutil.rmtree(extracted)
