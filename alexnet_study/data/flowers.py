"""Oxford 17 Category Flowers: the official archive (with its splits) or any class-folder tree."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from torchvision.datasets.utils import download_and_extract_archive, download_url

from alexnet_study.data.download import Target, download_or_explain, missing_dataset
from alexnet_study.data.files import (
    FileList,
    ImageFilesDataModule,
    class_folders,
    has_images,
    hold_out_test,
    label_folders,
)
from alexnet_study.errors import ConfigError, DataError

ARCHIVE_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
SPLITS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/datasplits.mat"
# The archive holds image_0001.jpg ... image_1360.jpg: 80 consecutive images per class, in the
# order of the dataset page's category list.
CLASSES = (
    "daffodil", "snowdrop", "lily_valley", "bluebell", "crocus", "iris", "tigerlily", "tulip", "fritillary",
    "sunflower", "daisy", "colts_foot", "dandelion", "cowslip", "buttercup", "windflower", "pansy",
)  # fmt: skip
PER_CLASS = 80
DOWNLOAD_WRITES = frozenset({"17flowers.tgz", "jpg", "datasplits.mat"})
IMAGE_NAME = re.compile(r"image_(\d{4})\.jpg$", re.IGNORECASE)


class Flowers17DataModule(ImageFilesDataModule):
    """Oxford-17 Flowers in either layout:

    (a) the official archive extracted in ``root``: ``jpg/image_0001.jpg`` ... ``image_1360.jpg``.
        The official split ``split`` (1, 2 or 3: 40 train / 20 val / 20 test images a class) is
        read from ``datasplits.mat`` (in ``root`` or ``root/jpg``) when present; otherwise
        ``test_fraction`` of each class is held out for testing and ``val_fraction`` of the rest
        for validation, stratified and seeded.
    (b) a class-folder tree: ``root/<class>/*`` (any class names), split the same seeded way.
    ``download`` fetches the official archive and split file into ``root`` when it is missing.
    """

    name = "flowers17"

    def __init__(
        self,
        root: str | os.PathLike[str],
        download: bool = True,
        split: int = 1,
        test_fraction: float = 0.25,
        expected_classes: int | None = len(CLASSES),
        expected_images: int | None = len(CLASSES) * PER_CLASS,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, expected_classes=expected_classes, expected_images=expected_images, **kwargs)
        if split not in (1, 2, 3):
            raise ConfigError(f"data.split={split!r}: the official splits are 1, 2 and 3")
        self.download = download
        self.split = split
        self.test_fraction = test_fraction

    def prepare_data(self) -> None:
        if not self.download or (self.root / "jpg").is_dir() or self._is_class_tree():
            return

        def fetch() -> None:
            download_and_extract_archive(ARCHIVE_URL, str(self.root))
            download_url(SPLITS_URL, str(self.root))

        target = Target(self.root, self.root, DOWNLOAD_WRITES, tree=("jpg",))
        download_or_explain("Oxford-17 Flowers", self.root / "jpg", fetch, self._place_by_hand(), target)

    def _place_by_hand(self) -> str:
        return (
            f"Extract 17flowers.tgz into data.root (now {self.root}) so that jpg/image_0001.jpg exists "
            "(datasplits.mat beside it for the official splits), or point data.root at one folder per class"
        )

    def _is_class_tree(self) -> bool:
        return self.root.is_dir() and any(has_images(self.root / name) for name in class_folders(self.root))

    def list_files(self) -> FileList:
        if (self.root / "jpg").is_dir():
            return self._official()
        if self._is_class_tree():
            return self._class_tree()
        raise missing_dataset(
            "Oxford-17 Flowers",
            self.root / "jpg",
            "is not there" + ("" if self.download else " (data.download=false)"),
            self._place_by_hand(),
        )

    def _official(self) -> FileList:
        numbered = {}
        for path in (self.root / "jpg").iterdir():
            match = IMAGE_NAME.match(path.name)
            if match:
                numbered[int(match.group(1))] = path
        expected = len(CLASSES) * PER_CLASS
        if sorted(numbered) != list(range(1, expected + 1)):
            missing = sorted(set(range(1, expected + 1)) - set(numbered))
            raise DataError(
                f"{self.root / 'jpg'} holds {len(numbered)} of the {expected} images image_0001.jpg..image_{expected:04d}.jpg "
                f"(missing e.g. {[f'image_{i:04d}.jpg' for i in missing[:5]]}): a partial copy? Extract 17flowers.tgz again"
            )
        label = {number: (number - 1) // PER_CLASS for number in numbered}
        split_file = next(
            (p for p in (self.root / "datasplits.mat", self.root / "jpg" / "datasplits.mat") if p.is_file()), None
        )
        if split_file is None:
            numbers = sorted(numbered)
            files, labels = [numbered[i] for i in numbers], [label[i] for i in numbers]
            return FileList(list(CLASSES), hold_out_test(files, labels, self.test_fraction, self.seed))
        table = _load_splits(split_file)
        splits = {}
        for name, key in (("train", "trn"), ("val", "val"), ("test", "tst")):
            numbers = _official_split(table, split_file, f"{key}{self.split}")
            splits[name] = ([numbered[i] for i in numbers], [label[i] for i in numbers])
        return FileList(list(CLASSES), splits)

    def _class_tree(self) -> FileList:
        classes = class_folders(self.root)
        files, labels = label_folders(self.root, classes)
        # The count is the archive's; a class-folder tree holds whatever the user collected.
        return FileList(classes, hold_out_test(files, labels, self.test_fraction, self.seed), count_fixed=False)


def _load_splits(path: Path) -> dict[str, Any]:
    """The contents of datasplits.mat (read once for all three splits)."""
    from scipy.io import loadmat  # imported here: only this layout needs it
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except (OSError, ValueError, MatReadError) as err:  # a short or truncated file gives MatReadError
        raise DataError(f"{path}: not a readable MATLAB file ({err}); delete it to use a seeded split instead") from err


def _official_split(table: dict[str, Any], path: Path, key: str) -> list[int]:
    """1-based image numbers of one official split (e.g. ``trn1``) from datasplits.mat's ``table``."""
    if key not in table:
        raise DataError(f"{path}: no '{key}' split in it (found {sorted(k for k in table if not k.startswith('__'))})")
    return sorted(int(i) for i in table[key].ravel())
