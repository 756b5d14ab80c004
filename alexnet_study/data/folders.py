"""Class-folder datasets (``train/<class>/*.jpg``, ``val/...``, ``test/...``), decoded once and cached."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from alexnet_study.data.base import Dataset, DeviceDataModule, Split
from alexnet_study.data.cache import cached, fingerprint
from alexnet_study.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
SPLITS = ("train", "val", "test")


def list_images(split_dir: Path, classes: list[str] | None = None) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``split_dir/<class>/`` (extensions matched case-insensitively), sorted.

    ``classes`` fixes the class order (the training split's); a class folder not in it is an error.
    """
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) {unknown} are not in the training split's classes")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                files.append(path)
                labels.append(label)
    return files, labels, classes


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode any PIL-readable image to RGB, shorter side resized to ``size``, centre ``size`` x ``size``."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 1/2..1/8 for free
        image = image.convert("RGB")
        width, height = image.size
        if (width, height) != (size, size):
            scale = size / min(width, height)
            new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
            left, top = (new_w - size) // 2, (new_h - size) // 2
            image = image.crop((left, top, left + size, top + size))
        return np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


def decode_images(
    files: list[Path], size: int, workers: int | None = None
) -> tuple[torch.Tensor, list[tuple[Path, str]]]:
    """Decode ``files`` in parallel threads into a uint8 (N, 3, size, size) tensor.

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

    with ThreadPoolExecutor(max_workers=workers or min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(work, enumerate(files)))
    return images.permute(0, 3, 1, 2).contiguous(), sorted(failures)


class ImageFolderDataModule(DeviceDataModule):
    """Any ``train/ val/ [test/]`` class-folder tree; ``val/`` may be absent (carved from train).

    Images are decoded once at ``stored_size`` x ``stored_size`` (shorter side resized, centre
    crop) and cached under ``cache_dir``; a second run with the same files loads the cache.
    """

    name = "image_folder"

    def __init__(
        self,
        root: str | os.PathLike[str],
        stored_size: int = 256,
        cache_dir: str | os.PathLike[str] | None = None,
        skip_bad_files: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(stored_size, bool) or not isinstance(stored_size, int) or stored_size < 1:
            raise ConfigError(f"data.stored_size={stored_size!r}: must be an integer >= 1")
        self.root = Path(root).expanduser()
        self.stored_size = stored_size
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / ".alexnet_study_cache"
        self.skip_bad_files = skip_bad_files
        self.cache_hit: bool | None = None

    def load(self) -> Dataset:
        if not (self.root / "train").is_dir():
            raise DataError(
                f"data.root={self.root}: no train/ folder there; expected train/<class>/<image>, "
                "optionally val/<class>/... and test/<class>/... (point data.root at such a tree)"
            )
        listed: dict[str, tuple[list[Path], list[int]]] = {}
        classes = None
        for split in SPLITS:
            if (self.root / split).is_dir():
                files, labels, classes = list_images(self.root / split, classes)
                listed[split] = (files, labels)
        if not listed["train"][0]:
            raise DataError(
                f"{self.root / 'train'}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        all_files = [f for files, _ in listed.values() for f in files]
        key = fingerprint(
            all_files, self.root, classes=classes, stored_size=self.stored_size, skip_bad_files=self.skip_bad_files
        )
        cache_file = self.cache_dir / f"{self.name}-{self.root.name}-{self.stored_size}px-{key[:16]}.pt"

        def build() -> dict[str, Any]:
            start = time.perf_counter()
            payload: dict[str, Any] = {"classes": classes}
            failures: list[tuple[Path, str]] = []
            for split, (files, labels) in listed.items():
                images, failed = decode_images(files, self.stored_size)
                bad = {path for path, _ in failed}
                keep = torch.tensor([path not in bad for path in files], dtype=torch.bool)
                payload[split] = {"images": images[keep], "labels": torch.tensor(labels)[keep]}
                failures += failed
            if failures and not self.skip_bad_files:
                shown = "; ".join(f"{p} ({why})" for p, why in failures[:10])
                raise DataError(
                    f"{len(failures)} unreadable image(s) under {self.root}: {shown}"
                    f"{' ...' if len(failures) > 10 else ''}. Remove them or set data.skip_bad_files=true"
                )
            payload["bad_files"] = [str(p) for p, _ in failures]
            log.info("decoded %d images in %.1f s -> %s", len(all_files), time.perf_counter() - start, cache_file)
            return payload

        payload, self.cache_hit = cached(cache_file, build)
        if self.cache_hit:
            log.info("loaded %d decoded images from cache %s", len(all_files), cache_file)
        splits = {name: Split(**payload[name]) for name in SPLITS if name in payload}
        if payload["bad_files"]:
            log.warning("skipped %d unreadable image(s) (data.skip_bad_files=true)", len(payload["bad_files"]))
        return Dataset(
            train=splits["train"], val=splits.get("val"), test=splits.get("test"), classes=list(payload["classes"]),
            info={"root": str(self.root), "files": len(all_files), "fingerprint": key, "bad_files": payload["bad_files"]},
        )  # fmt: skip
