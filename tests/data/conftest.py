"""Helpers shared by the tests in this folder."""

from __future__ import annotations

import os
import tarfile
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from PIL import Image

from alexnet_study.data import (
    Dataset,
    DeviceDataModule,
    Split,
    SyntheticDataModule,
)
from alexnet_study.data.transforms import NORMALIZATIONS

from ..conftest import shared_archive

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def random_images(n: int, size: int, low: int = 0, high: int = 256, seed: int = 0) -> torch.Tensor:
    """A uint8 (n, 3, size, size) batch of seeded random pixels in [low, high)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, 3, size, size), generator=generator, dtype=torch.uint8)


def normalized(images: torch.Tensor, name: str = "imagenet") -> torch.Tensor:
    """The reference normalization, written out: (x / 255 - mean) / std per channel."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[name])
    return (images.float() / 255.0 - mean) / std


def padding_value(name: str = "imagenet") -> torch.Tensor:
    """What a zero (padded) pixel becomes after normalization: -mean / std, shape (3,)."""
    mean, std = (torch.tensor(v) for v in NORMALIZATIONS[name])
    return -mean / std


def make_split(n: int, size: int = 4, num_classes: int | None = None) -> Split:
    """A split whose labels identify the samples (arange, or arange % num_classes)."""
    labels = torch.arange(n) if num_classes is None else torch.arange(n) % num_classes
    return Split(random_images(n, size), labels)


def sorted_rows(images: torch.Tensor) -> list[bytes]:
    """The images of a batch as an order-free multiset (sorted raw bytes)."""
    return sorted(bytes(image.numpy()) for image in images)


def stub_trainer(training: bool = False, rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    """The few trainer attributes a DeviceDataModule reads (a CPU 'device')."""
    return SimpleNamespace(
        training=training,
        global_rank=rank,
        world_size=world_size,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )


class FixedDataModule(DeviceDataModule):
    """A DeviceDataModule around a ready-made Dataset; counts its loads."""

    name = "fixed"

    def __init__(self, dataset: Dataset, **kwargs) -> None:
        super().__init__(**kwargs)
        self._fixed = dataset
        self.loads = 0

    def load(self) -> Dataset:
        self.loads += 1
        return self._fixed


def synthetic(**overrides) -> SyntheticDataModule:
    """A tiny SyntheticDataModule (4 classes, 16x16) with ``overrides``."""
    kwargs = dict(num_classes=4, train_size=40, val_size=12, test_size=8, stored_size=16, image_size=16, batch_size=4)
    kwargs.update(overrides)
    return SyntheticDataModule(**kwargs)


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept the fake files: skip torchvision's md5 checks (the files must still exist)."""
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads fail as they do without a network (and never reach one)."""

    def fail(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fail)


@pytest.fixture(scope="module")
def flowers_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official layout: jpg/image_0001.jpg ... image_1360.jpg, 80 a class (tiny images)."""
    root = tmp_path_factory.mktemp("flowers17")
    for number in range(1, 1361):
        save_jpeg(root / "jpg" / f"image_{number:04d}.jpg", ((number - 1) // 80 * 15, 60, 200), size=(6, 6))
    return root


@pytest.fixture(scope="module")
def hymenoptera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = shared_archive("hymenoptera.tar.gz")
    target = tmp_path_factory.mktemp("hymenoptera")
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "hymenoptera"


CLASSES = ["ant", "cat", "zebra"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "images", TREE)


@pytest.fixture
def tree_with_val(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "images", TREE + VAL_TREE)


@pytest.fixture
def bad_tree(tmp_path: Path) -> tuple[Path, list[Path]]:
    root = tmp_path / "bad"
    for cls in ("a", "b"):
        for i in range(2):
            save_image(root / "train" / cls / f"ok{i}.png", "RGB", (8, 8), (10 * i, 100, 200))
    save_image(root / "test" / "a" / "ok.png", "RGB", (8, 8), (1, 1, 1))
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "full.jpg", quality=95)
    jpeg = (root / "full.jpg").read_bytes()
    (root / "full.jpg").unlink()
    bad = [
        root / "train" / "a" / "truncated.jpg",
        root / "train" / "b" / "empty.jpg",
        root / "train" / "b" / "garbage.jpg",
    ]
    bad[0].write_bytes(jpeg[: len(jpeg) * 2 // 3])
    bad[1].write_bytes(b"")
    bad[2].write_bytes(b"this is not a JPEG at all\n" * 10)
    return root, bad


@pytest.fixture
def unbalanced_labels() -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in CLASS_SIZES.items()])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(7))]


def framed_photos(n: int = 2, side: int = 256, frame: int = 40) -> torch.Tensor:
    """uint8 photos with a white frame ``frame`` pixels wide around a black middle."""
    images = torch.full((n, 3, side, side), 255, dtype=torch.uint8)
    images[..., frame:-frame, frame:-frame] = 0
    return images


def save_jpeg(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)
    return path


# split, class, file name, PIL mode, (width, height), the RGB colour it decodes to
TREE = [
    ("train", "zebra", "z0.jpg", "RGB", (20, 12), (200, 30, 60)),
    ("train", "zebra", "z1.PNG", "RGBA", (9, 15), (10, 200, 30)),
    ("train", "ant", "a0.gif", "P", (10, 10), (0, 90, 250)),
    ("train", "ant", "a1.bmp", "L", (16, 8), (77, 77, 77)),
    ("train", "ant", "a2.JPG", "CMYK", (12, 12), (250, 10, 10)),
    ("train", "cat", "c0.jpeg", "RGB", (64, 48), (40, 40, 160)),  # large enough for JPEG draft scaling
    ("train", "cat", "c1.png", "L", (8, 30), (210, 210, 210)),
    ("train", "cat", "c2.png", "P", (30, 8), (120, 60, 20)),
    ("train", "cat", "c3.jpg", "L", (11, 9), (30, 30, 30)),
    ("train", "cat", "c4.png", "RGB", (8, 8), (12, 34, 56)),
    ("test", "ant", "t0.jpg", "RGB", (10, 14), (90, 180, 90)),
    ("test", "cat", "t1.png", "RGBA", (8, 9), (250, 250, 5)),
    ("test", "cat", "t2.gif", "P", (13, 13), (60, 0, 60)),
]


VAL_TREE = [
    ("val", "ant", "v0.png", "RGB", (8, 8), (1, 2, 3)),
    ("val", "zebra", "v1.JPG", "RGB", (9, 12), (150, 150, 0)),
]


def save_image(path: Path, mode: str, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """A uniform image of ``colour`` saved in ``mode`` with the format its suffix names."""
    image = Image.new("RGB", size, colour)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
    elif mode == "RGBA":
        image.putalpha(128)
    elif mode in ("L", "CMYK"):
        image = image.convert(mode)
    fmt = SAVE_FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))


def build_tree(root: Path, entries: list[tuple]) -> Path:
    for split, cls, name, mode, size, colour in entries:
        save_image(root / split / cls / name, mode, size, colour)
    # Files and folders that are not images of a class: all ignored.
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "README.md").write_text("not a class folder")
    save_image(root / "train" / ".ipynb_checkpoints" / "x.png", "RGB", (8, 8), (0, 0, 0))
    return root


CLASS_SIZES = {0: 3, 1: 10, 2: 25, 3: 7, 5: 1}  # unbalanced, and label 4 missing


SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}
