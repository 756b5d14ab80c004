"""ImageFolderDataModule: decoding every format, the cache, bad files, class folders."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_study.data import (
    ImageFolderDataModule,
    Split,
    files,
)
from alexnet_study.errors import ConfigError, DataError

from .conftest import CLASSES, TREE, VAL_TREE, save_image

# ImageFolderDataModule
# ---------------------------------------------------------------------------------------------


def folder_dm(root: Path, **overrides) -> ImageFolderDataModule:
    kwargs = dict(root=root, num_classes=3, stored_size=8, image_size=8, batch_size=2, cache_dir=root.parent / "cache")
    kwargs.update(overrides)
    return ImageFolderDataModule(**kwargs)


def expected_rows(split: str, entries: list[tuple]) -> list[tuple[int, tuple[int, int, int]]]:
    """(label, colour) per row: classes in sorted order, files sorted by name within a class."""
    rows = [(CLASSES.index(cls), name, colour) for s, cls, name, _, _, colour in entries if s == split]
    return [(label, colour) for label, _, colour in sorted(rows)]


def assert_uniform_colours(split: Split, rows: list[tuple[int, tuple[int, int, int]]]) -> None:
    assert split.labels.tolist() == [label for label, _ in rows]
    expected = torch.tensor([colour for _, colour in rows], dtype=torch.int16).view(-1, 3, 1, 1)
    diff = (split.images.to(torch.int16) - expected).abs()
    assert diff.max() <= 3, diff.amax(dim=(1, 2, 3)).tolist()


def test_image_folder_counts_classes_and_sizes(tree: Path) -> None:
    dm = folder_dm(tree, val_fraction=0.0)
    dm.setup()
    splits = dm.splits()
    assert dm.classes == CLASSES
    assert set(splits) == {"train", "test"}
    assert Counter(splits["train"].labels.tolist()) == {0: 3, 1: 5, 2: 2}
    assert Counter(splits["test"].labels.tolist()) == {0: 1, 1: 2}
    for split in splits.values():
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 8, 8)
    assert dm.dataset.info["files"] == 13
    assert dm.dataset.info["bad_files"] == []


def test_image_folder_decodes_every_format_to_its_colour(tree: Path) -> None:
    dm = folder_dm(tree, val_fraction=0.0)
    dm.setup()
    assert_uniform_colours(dm.splits()["train"], expected_rows("train", TREE))
    assert_uniform_colours(dm.splits()["test"], expected_rows("test", TREE))


def test_image_folder_uses_its_own_val_folder(tree_with_val: Path) -> None:
    dm = folder_dm(tree_with_val, val_fraction=0.5)
    dm.setup()
    splits = dm.splits()
    assert {name: len(s) for name, s in splits.items()} == {"train": 10, "val": 2, "test": 3}
    assert_uniform_colours(splits["val"], expected_rows("val", VAL_TREE))


def test_image_folder_carves_val_from_train_without_a_val_folder(tree: Path) -> None:
    dm = folder_dm(tree, val_fraction=0.4)
    dm.setup()
    splits = dm.splits()
    # round(0.4 * n) of each class: ant 3 -> 1, cat 5 -> 2, zebra 2 -> 1
    assert Counter(splits["val"].labels.tolist()) == {0: 1, 1: 2, 2: 1}
    assert Counter(splits["train"].labels.tolist()) == {0: 2, 1: 3, 2: 1}
    assert len(splits["test"]) == 3


@pytest.mark.parametrize("stored_size", [8, 13])
def test_image_folder_stored_size(tree: Path, stored_size: int) -> None:
    dm = folder_dm(tree, stored_size=stored_size, image_size=227, val_fraction=0.0)
    dm.setup()
    assert dm.splits()["train"].images.shape == (10, 3, stored_size, stored_size)
    images, labels = next(iter(dm.test_dataloader()))
    out, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert out.shape == (len(images), 3, 227, 227) and out.dtype == torch.float32


@pytest.mark.parametrize("size", [(24, 8), (8, 24)], ids=["wide", "tall"])
def test_decode_keeps_the_centre_square(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    bands = np.zeros((height, width, 3), dtype=np.uint8)
    thirds = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for i, colour in enumerate(thirds):
        if width > height:
            bands[:, i * width // 3 : (i + 1) * width // 3] = colour
        else:
            bands[i * height // 3 : (i + 1) * height // 3] = colour
    Image.fromarray(bands).save(tmp_path / "bands.png")
    decoded = files.decode_image(tmp_path / "bands.png", 8)
    assert decoded.shape == (8, 8, 3) and decoded.dtype == np.uint8
    assert (decoded == np.array([0, 255, 0], dtype=np.uint8)).all()


def test_decode_downscales_the_shorter_side(tmp_path: Path) -> None:
    left_right = np.zeros((40, 80, 3), dtype=np.uint8)
    left_right[:, 40:] = 255
    Image.fromarray(left_right).save(tmp_path / "half.png")
    decoded = files.decode_image(tmp_path / "half.png", 10)  # 80x40 -> 20x10 -> centre 10x10
    assert decoded.shape == (10, 10, 3)
    assert (decoded[:, :4] == 0).all() and (decoded[:, 6:] == 255).all()


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path: Path) -> None:
    ramp = np.tile(np.array([0, 257 * 64, 257 * 128, 65535], dtype=np.uint16).repeat(4), (16, 1))  # 16x16
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode == "I;16"  # what PIL makes of a 16-bit grayscale PNG
    decoded = files.decode_image(tmp_path / "deep.png", 16)
    assert decoded.shape == (16, 16, 3)
    assert decoded[0, ::4, 0].tolist() == [0, 64, 128, 255]  # convert("RGB") alone gives [0, 255, 255, 255]
    assert (decoded == decoded[..., :1]).all()  # gray


def test_decoding_logs_its_progress_with_counts_and_rate(
    tree: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(files, "PROGRESS_EVERY_S", 0.0)  # a line per image, instead of every 5 s
    with caplog.at_level("INFO", logger="alexnet_study"):
        folder_dm(tree).setup()
    lines = [r.getMessage() for r in caplog.records]
    progress = [line for line in lines if line.startswith("image_folder train: ")]
    assert progress and all("images/s" in line and "/10 (" in line for line in progress), lines
    assert any("decoding 13 images at 8x8 once" in line for line in lines)
    assert any(line.startswith("image_folder: evaluation: the whole 8x8 image") for line in lines)


def test_image_folder_cache_is_reused_without_decoding(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = folder_dm(tree)
    first.setup()
    assert first.cache_hit is False
    assert len(list((tree.parent / "cache").glob("*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again despite a valid cache")

    monkeypatch.setattr(files, "decode_images", no_decoding)
    second = folder_dm(tree)
    second.setup()
    assert second.cache_hit is True
    assert second.classes == first.classes
    for name, split in first.splits().items():
        assert torch.equal(split.images, second.splits()[name].images)
        assert torch.equal(split.labels, second.splits()[name].labels)


def test_image_folder_default_cache_lives_under_the_root(tree: Path) -> None:
    dm = folder_dm(tree, cache_dir=None)
    dm.setup()
    assert list((tree / ".alexnet_study_cache").glob("*.pt"))
    again = folder_dm(tree, cache_dir=None)
    again.setup()
    assert again.cache_hit is True and again.classes == CLASSES


@pytest.mark.parametrize("change", ["rewrite", "touch"])
def test_changing_a_file_invalidates_the_cache(tree: Path, change: str) -> None:
    folder_dm(tree).setup()
    path = tree / "train" / "cat" / "c4.png"
    mtime = path.stat().st_mtime_ns
    if change == "rewrite":
        save_image(path, "RGB", (8, 8), (222, 111, 0))
    os.utime(path, ns=(mtime + 5_000_000_000, mtime + 5_000_000_000))
    dm = folder_dm(tree, val_fraction=0.0)
    dm.setup()
    assert dm.cache_hit is False
    colours = {tuple(img[:, 0, 0].tolist()) for img in dm.splits()["train"].images}
    assert ((222, 111, 0) in colours) == (change == "rewrite")
    assert ((12, 34, 56) in colours) == (change == "touch")


def test_other_stored_size_does_not_hit_the_cache(tree: Path) -> None:
    folder_dm(tree).setup()
    dm = folder_dm(tree, stored_size=9)
    dm.setup()
    assert dm.cache_hit is False and dm.splits()["train"].images.shape[-1] == 9


def test_a_corrupt_cache_file_is_rebuilt(tree: Path) -> None:
    first = folder_dm(tree)
    first.setup()
    (cache_file,) = (tree.parent / "cache").glob("*.pt")
    cache_file.write_bytes(b"garbage, not a torch checkpoint")
    rebuilt = folder_dm(tree)
    rebuilt.setup()
    assert rebuilt.cache_hit is False
    assert torch.equal(rebuilt.splits()["train"].images, first.splits()["train"].images)
    again = folder_dm(tree)
    again.setup()
    assert again.cache_hit is True


def test_a_new_class_folder_invalidates_the_cache(tree: Path) -> None:
    folder_dm(tree).setup()
    save_image(tree / "train" / "aardvark" / "a.png", "RGB", (8, 8), (5, 5, 5))
    dm = folder_dm(tree, num_classes=4)
    dm.setup()
    assert dm.classes == ["aardvark", *CLASSES]


def test_unreadable_images_raise_a_data_error_naming_them(bad_tree: tuple[Path, list[Path]]) -> None:
    root, bad = bad_tree
    dm = folder_dm(root, num_classes=2)
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    for path in bad:
        assert str(path) in message
    assert "data.skip_bad_files=true" in message
    assert "3 unreadable" in message
    assert not list((root.parent / "cache").glob("*.pt"))  # nothing cached from a failed decode


def test_skip_bad_files_drops_them(bad_tree: tuple[Path, list[Path]]) -> None:
    root, bad = bad_tree
    dm = folder_dm(root, num_classes=2, skip_bad_files=True, val_fraction=0.0)
    dm.setup()
    assert Counter(dm.splits()["train"].labels.tolist()) == {0: 2, 1: 2}
    assert len(dm.splits()["test"]) == 1
    assert sorted(dm.dataset.info["bad_files"]) == sorted(str(p) for p in bad)
    assert dm.dataset.info["files"] == 8
    # the kept rows are the readable images, not the zero rows left for bad files
    assert (dm.splits()["train"].images[:, 1] == 100).all()
    cached = folder_dm(root, num_classes=2, skip_bad_files=True, val_fraction=0.0)
    cached.setup()
    assert cached.cache_hit is True
    assert sorted(cached.dataset.info["bad_files"]) == sorted(str(p) for p in bad)


def test_unreadable_images_are_reported_across_all_splits(bad_tree: tuple[Path, list[Path]]) -> None:
    root, bad = bad_tree
    in_test = root / "test" / "a" / "broken.png"
    in_test.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as info:
        folder_dm(root, num_classes=2).setup()
    for path in [*bad, in_test]:
        assert str(path) in str(info.value)


def test_missing_train_folder_names_data_root(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    (root / "test" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"data\.root=") as info:
        folder_dm(root, num_classes=1).setup()
    assert str(root) in str(info.value)


def test_a_train_folder_without_images_is_a_data_error(tmp_path: Path) -> None:
    root = tmp_path / "noimages"
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no training images"):
        folder_dm(root, num_classes=1).setup()


def test_a_test_class_missing_from_train_is_a_data_error(tree: Path) -> None:
    save_image(tree / "test" / "ghost" / "g.png", "RGB", (8, 8), (0, 0, 0))
    with pytest.raises(DataError, match="ghost"):
        folder_dm(tree).setup()


def test_image_folder_num_classes_mismatch(tree: Path) -> None:
    with pytest.raises(DataError, match=r"found 3 classes.*ant, cat, zebra"):
        folder_dm(tree, num_classes=10).setup()


@pytest.mark.parametrize("stored_size", [0, True, 2.5])
def test_image_folder_rejects_bad_stored_size(tmp_path: Path, stored_size) -> None:
    with pytest.raises(ConfigError, match="stored_size"):
        folder_dm(tmp_path, stored_size=stored_size)


# ---------------------------------------------------------------------------------------------
