"""Caltech-101 (101 object classes, ``BACKGROUND_Google`` always left out), in both layouts users have."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchvision import datasets

from alexnet_study.data.download import Target, download_or_explain, missing_dataset
from alexnet_study.data.files import FileList, ImageFilesDataModule, class_folders, hold_out_test, label_folders
from alexnet_study.errors import DataError

CATEGORIES = "101_ObjectCategories"
BACKGROUND = "BACKGROUND_Google"
NUM_CLASSES = 101
NUM_IMAGES = 8677  # without BACKGROUND_Google's 467
DOWNLOAD_WRITES = frozenset({"caltech-101.zip", "caltech-101", CATEGORIES, "Annotations"})


class Caltech101DataModule(ImageFilesDataModule):
    """Caltech-101 from either layout:

    (a) torchvision's download: ``root/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg``
        (``root`` may also point at the ``caltech101`` folder itself). There is no official
        split: ``test_fraction`` of each class is held out for testing, seeded.
    (b) the course layout: ``root/101_ObjectCategories/<class>/...`` beside ``train.txt`` and
        ``test.txt``, one ``class/image_NNNN.jpg`` per line; every listed file must exist.

    The validation set is carved from the training files, stratified by class
    (``val_fraction``; the study used 0.5). Counts are checked: a half-extracted copy is an
    error, never a silently smaller dataset.
    """

    name = "caltech101"

    def __init__(
        self,
        root: str | os.PathLike[str],
        download: bool = True,
        test_fraction: float = 0.2,
        expected_classes: int | None = NUM_CLASSES,
        expected_images: int | None = NUM_IMAGES,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, expected_classes=expected_classes, expected_images=expected_images, **kwargs)
        self.download = download
        self.test_fraction = test_fraction

    def _categories(self) -> Path | None:
        for candidate in (self.root / CATEGORIES, self.root / "caltech101" / CATEGORIES):
            if candidate.is_dir():
                return candidate
        return None

    def prepare_data(self) -> None:
        if self.download and self._categories() is None:
            download_or_explain(
                "Caltech-101",
                self.root / "caltech101" / CATEGORIES,
                lambda: datasets.Caltech101(str(self.root), download=True),
                f"Extract it so that {CATEGORIES}/ is in data.root (now {self.root}) or in its caltech101/",
                # torchvision writes into root/caltech101/: its archive, the archive's folder, the images.
                Target(self.root, self.root / "caltech101", DOWNLOAD_WRITES, tree=(CATEGORIES, "caltech101")),
            )

    def list_files(self) -> FileList:
        categories = self._categories()
        if categories is None:
            raise missing_dataset(
                "Caltech-101",
                self.root / "caltech101" / CATEGORIES,
                "is not there" + ("" if self.download else " (data.download=false)"),
                f"Extract it so that {CATEGORIES}/ is in data.root (now {self.root}) or in its caltech101/",
            )
        lists = categories.parent / "train.txt", categories.parent / "test.txt"
        if all(path.is_file() for path in lists):
            return self._from_split_files(categories, *lists)
        return self._from_folders(categories)

    def _from_folders(self, categories: Path) -> FileList:
        leftover = categories / "caltech101"
        if leftover.is_dir() and not any(leftover.iterdir()):
            raise DataError(
                f"{leftover}: an empty folder among the classes, left by a download into the Caltech-101 tree; remove it"
            )
        classes = class_folders(categories, exclude=(BACKGROUND,))
        files, labels = label_folders(categories, classes)
        return FileList(classes, hold_out_test(files, labels, self.test_fraction, self.seed))

    def _from_split_files(self, categories: Path, train_list: Path, test_list: Path) -> FileList:
        classes = class_folders(categories, exclude=(BACKGROUND,))
        label_of = {name: i for i, name in enumerate(classes)}
        splits, missing, unknown = {}, [], set()
        for split, list_file in (("train", train_list), ("test", test_list)):
            files, labels = [], []
            for line in list_file.read_text().splitlines():
                entry = line.strip().replace("\\", "/")
                if not entry or entry.startswith("#"):
                    continue
                name = entry.split("/", 1)[0]
                if name == BACKGROUND:
                    continue
                if name not in label_of:
                    unknown.add(name)
                    continue
                path = categories / entry
                if not path.is_file():
                    missing.append(path)
                    continue
                files.append(path)
                labels.append(label_of[name])
            splits[split] = (files, labels)
        if unknown:
            raise DataError(
                f"{train_list.parent}: the split files name classes with no folder in {categories}: {sorted(unknown)[:10]}"
            )
        if missing:
            shown = ", ".join(str(p) for p in missing[:10])
            raise DataError(
                f"{len(missing)} file(s) listed in {train_list.name}/{test_list.name} are missing under {categories} "
                f"(first: {shown}): a partial copy? Extract the dataset again"
            )
        # The lists, not the folders, define the images (each must exist): no fixed count.
        return FileList(classes, splits, count_fixed=False)
