"""Datasets read from image files: list them, scan and decode them once, cache the tensors.

The decode pass is the pre-flight scan: it runs at data setup, before any training step, on
every listed file. Convertible images (grayscale, palette, RGBA, CMYK, GIF, PNG, JPEG, any case
of extension) become RGB; unreadable ones (truncated, empty, not an image) are reported together
by count and path, and the run stops, unless ``data.skip_bad_files=true`` skips them (the count
goes to the log and ``metrics.json``). Nothing unreadable can reach an epoch.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alexnet_study.data.base import Dataset, DeviceDataModule, Split, stratified_split
from alexnet_study.data.cache import cached, fingerprint
from alexnet_study.errors import DataError, check_int

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
SPLITS = ("train", "val", "test")
# PIL's modes for 16-bit (and 32-bit) integer pixels: a 16-bit grayscale PNG opens as I;16.
WIDE_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# Seconds between progress lines while decoding.
PROGRESS_EVERY_S = 5.0


@dataclass
class FileList:
    """What a dataset's layout yields: class names and, per split, files with their labels.

    ``count_fixed``: the layout has a known image count (``expected_images`` is checked); false
    where lists or a user's own folders, not the dataset, define which images there are.
    """

    classes: list[str]
    splits: dict[str, tuple[list[Path], list[int]]]
    count_fixed: bool = True

    def count(self) -> int:
        return sum(len(files) for files, _ in self.splits.values())


def images_in(folder: Path) -> list[Path]:
    """Image files below ``folder`` (any depth; extensions matched case-insensitively), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def has_images(folder: Path) -> bool:
    """Whether any image file (by extension) is below ``folder``; stops at the first one."""
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def class_folders(root: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Sorted names of the class folders directly under ``root`` (hidden ones and ``exclude`` left out)."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in exclude)


def label_folders(parent: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """The images of each ``parent/<class>`` folder (a missing one has none), labelled by the class's index."""
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = images_in(parent / name) if (parent / name).is_dir() else []
        files += found
        labels += [label] * len(found)
    return files, labels


def hold_out_test(
    files: list[Path], labels: list[int], fraction: float, seed: int
) -> dict[str, tuple[list[Path], list[int]]]:
    """``train`` and ``test`` splits: ``fraction`` of each class held out for testing, seeded
    (validation is carved from ``train`` later)."""
    train, test = stratified_split(torch.tensor(labels), fraction, seed, "data.test_fraction")
    return {
        name: ([files[i] for i in index.tolist()], [labels[i] for i in index.tolist()])
        for name, index in (("train", train), ("test", test))
    }


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB. 16-bit integer images (PNG, TIFF: modes ``I;16*`` and ``I``) are
    scaled from 0..65535 to 0..255; PIL's ``convert`` would clip them, turning most pixels white."""
    if image.mode in WIDE_INTEGER_MODES:
        pixels = np.asarray(image).astype(np.float32)
        image = Image.fromarray(np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode any PIL-readable image to RGB, shorter side resized to ``size``, centre ``size`` x ``size``."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2..1/8 for free
        image = to_rgb(image)
        width, height = image.size
        if (width, height) != (size, size):
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            image = image.crop((left, top, left + size, top + size))
        return np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


class Progress:
    """Logs ``what: done/total (share, rate)`` at INFO every ``PROGRESS_EVERY_S`` seconds of a long loop."""

    def __init__(self, what: str, total: int) -> None:
        self.what, self.total = what, total
        self.start = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S and done < self.total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            log.info(
                "%s: %d/%d (%.0f%%, %.0f images/s, about %.0f s left)",
                self.what, done, self.total, 100 * done / self.total, rate, (self.total - done) / max(rate, 1e-9),
            )  # fmt: skip


def decode_images(
    files: list[Path], size: int, workers: int | None = None, what: str = "decoding"
) -> tuple[torch.Tensor, list[tuple[Path, str]]]:
    """Decode ``files`` in parallel threads into a uint8 (N, 3, size, size) tensor, logging
    progress (``what``: done/total, rate) every few seconds.

    Returns the tensor (rows of unreadable files are left zero) and the (path, reason) failures.
    """
    images = torch.zeros((len(files), size, size, 3), dtype=torch.uint8)
    failures: list[tuple[Path, str]] = []

    def work(item: tuple[int, Path]) -> None:
        index, path = item
        try:
            images[index] = torch.from_numpy(decode_image(path, size))
        except Exception as err:  # every reason a user's file can be unreadable
            failures.append((path, f"{type(err).__name__}: {err}"))

    progress = Progress(what, len(files))
    with ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(work, enumerate(files)), start=1):
            progress.update(done)
    return images.permute(0, 3, 1, 2).contiguous(), sorted(failures)


class ImageFilesDataModule(DeviceDataModule):
    """Base for datasets of image files. Subclasses implement :meth:`list_files` for their layout.

    Images are decoded once at ``stored_size`` x ``stored_size`` (shorter side resized, centre
    crop) and cached under ``cache_dir``, keyed by the listed files (paths, sizes, mtimes), the
    split each is in, the classes and the settings: a second run with the same files loads the
    cache. ``expected_classes`` / ``expected_images`` (when set) catch half-extracted datasets.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        stored_size: int = 256,
        cache_dir: str | os.PathLike[str] | None = None,
        skip_bad_files: bool = False,
        expected_classes: int | None = None,
        expected_images: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_int("data.stored_size", stored_size, 1)
        self.root = Path(root).expanduser()
        self.stored_size = stored_size
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / ".alexnet_study_cache"
        self.skip_bad_files = skip_bad_files
        self.expected_classes = expected_classes
        self.expected_images = expected_images
        self.cache_hit: bool | None = None

    def list_files(self) -> FileList:
        """The files of each split with their labels (no decoding); raise DataError for a bad layout."""
        raise NotImplementedError

    def load(self) -> Dataset:
        listing = self._drop_empty_classes(self.list_files())
        self._check_counts(listing)
        key = fingerprint(
            {split: files for split, (files, _) in listing.splits.items()},
            self.root,
            classes=listing.classes,
            stored_size=self.stored_size,
            skip_bad_files=self.skip_bad_files,
        )
        cache_file = self.cache_dir / f"{self.name}-{self.root.name}-{self.stored_size}px-{key[:16]}.pt"
        payload, self.cache_hit = cached(cache_file, lambda: self._decode(listing, cache_file))
        if self.cache_hit:
            log.info("loaded %d decoded images from cache %s", listing.count(), cache_file)
        if payload["bad_files"]:
            log.warning("skipped %d unreadable image(s) (data.skip_bad_files=true)", len(payload["bad_files"]))
        splits = {name: Split(**payload[name]) for name in SPLITS if name in payload}
        return Dataset(
            train=splits["train"],
            val=splits.get("val"),
            test=splits.get("test"),
            classes=list(payload["classes"]),
            info={
                "root": str(self.root),
                "files": listing.count(),
                "fingerprint": key,
                "cache_file": str(cache_file),
                "bad_files": payload["bad_files"],
            },
        )

    def _decode(self, listing: FileList, cache_file: Path) -> dict[str, Any]:
        start = time.perf_counter()
        payload: dict[str, Any] = {"classes": listing.classes}
        failures: list[tuple[Path, str]] = []
        log.info(
            "%s: decoding %d images at %dx%d once; later runs load them from %s",
            self.name, listing.count(), self.stored_size, self.stored_size, cache_file,
        )  # fmt: skip
        for split, (files, labels) in listing.splits.items():
            images, failed = decode_images(files, self.stored_size, what=f"{self.name} {split}")
            bad = {path for path, _ in failed}
            keep = torch.tensor([path not in bad for path in files], dtype=torch.bool)
            payload[split] = {"images": images[keep], "labels": torch.tensor(labels, dtype=torch.long)[keep]}
            failures += failed
        if failures and not self.skip_bad_files:
            shown = "; ".join(f"{p} ({why})" for p, why in failures[:10])
            raise DataError(
                f"{len(failures)} unreadable image(s) under {self.root}: {shown}"
                f"{' ...' if len(failures) > 10 else ''}. Remove them or set data.skip_bad_files=true"
            )
        payload["bad_files"] = [str(p) for p, _ in failures]
        log.info("decoded %d images in %.1f s -> %s", listing.count(), time.perf_counter() - start, cache_file)
        return payload

    def _drop_empty_classes(self, listing: FileList) -> FileList:
        """A class without training images cannot be learned: an error, or dropped with skip_bad_files."""
        train_labels = set(listing.splits["train"][1]) if "train" in listing.splits else set()
        empty = [name for i, name in enumerate(listing.classes) if i not in train_labels]
        if not empty:
            return listing
        if not self.skip_bad_files:
            raise DataError(
                f"{self.root}: class(es) {empty[:10]} have no training images (empty folder?); "
                "remove them or set data.skip_bad_files=true to leave them out"
            )
        log.warning("leaving out %d class(es) without training images: %s", len(empty), empty[:10])
        kept = [i for i, name in enumerate(listing.classes) if name not in empty]
        new_label = {old: new for new, old in enumerate(kept)}
        splits = {
            split: (
                [f for f, y in zip(files, labels, strict=True) if y in new_label],
                [new_label[y] for y in labels if y in new_label],
            )
            for split, (files, labels) in listing.splits.items()
        }
        return FileList([listing.classes[i] for i in kept], splits, count_fixed=listing.count_fixed)

    def _check_counts(self, listing: FileList) -> None:
        if not listing.splits.get("train", ([], []))[0]:
            raise DataError(
                f"{self.root}: no training images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        found_classes, found_images = len(listing.classes), listing.count()
        problems = []
        if self.expected_classes is not None and found_classes != self.expected_classes:
            problems.append(f"{found_classes} classes (expected {self.expected_classes})")
        expected_images = self.expected_images if listing.count_fixed else None
        if expected_images is not None and found_images != expected_images:
            problems.append(f"{found_images} images (expected {expected_images})")
        if problems:
            raise DataError(
                f"{self.name} at {self.root} has {' and '.join(problems)}: a partial or damaged copy? "
                "Extract the dataset again, or set data.expected_images / data.expected_classes to null for a custom subset"
            )
