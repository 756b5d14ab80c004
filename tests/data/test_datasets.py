"""The seed datasets (Caltech-101, Oxford-17 Flowers, ants/bees), augmentation presets, dataset views."""

from __future__ import annotations

import dataclasses
import json
import shutil
import urllib.error
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from scipy.io import savemat
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from alexnet_study.bench.augment import PRESETS, measure, preset
from alexnet_study.data import (
    Caltech101DataModule,
    CIFARDataModule,
    DeviceTransform,
    Flowers17DataModule,
    HymenopteraDataModule,
    caltech,
    flowers,
    folders,
)
from alexnet_study.errors import DataError
from alexnet_study.training.run import run

from .conftest import save_jpeg

OFFLINE = urllib.error.URLError("[Errno -2] Name or service not known")


def labels_of(dm, split: str) -> Counter[int]:
    return Counter(dm.splits()[split].labels.tolist())


def offline(*args: object, **kwargs: object) -> None:
    raise OFFLINE


# ---------------------------------------------------------------------------------------------
# Caltech-101
# ---------------------------------------------------------------------------------------------

CALTECH_CLASSES = ["accordion", "airplanes", "anchor"]


def caltech_folders(root: Path, per_class: int = 6) -> Path:
    """``root/101_ObjectCategories/<class>/image_NNNN.jpg`` plus a BACKGROUND_Google folder."""
    categories = root / "101_ObjectCategories"
    for c, name in enumerate([*CALTECH_CLASSES, "BACKGROUND_Google"]):
        for i in range(1, per_class + 1):
            save_jpeg(categories / name / f"image_{i:04d}.jpg", (40 * c, 10 * i, 90))
    return categories


def caltech_dm(root: Path, **kwargs: object) -> Caltech101DataModule:
    settings = {
        "num_classes": 3, "image_size": 8, "stored_size": 8, "batch_size": 2, "val_fraction": 0.5,
        "expected_classes": 3, "expected_images": 18, "download": False, "cache_dir": root / "cache",
    }  # fmt: skip
    return Caltech101DataModule(root=root, **{**settings, **kwargs})


def test_caltech_course_layout_uses_the_split_files_and_drops_background(tmp_path: Path) -> None:
    caltech_folders(tmp_path)
    train = [f"{name}/image_{i:04d}.jpg" for name in CALTECH_CLASSES for i in (1, 2, 3, 4)]
    test = [f"{name}/image_{i:04d}.jpg" for name in CALTECH_CLASSES for i in (5, 6)]
    (tmp_path / "train.txt").write_text("\n".join([*train, "BACKGROUND_Google/image_0001.jpg"]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n\n")
    dm = caltech_dm(tmp_path)
    dm.setup()
    assert dm.classes == CALTECH_CLASSES
    # 4 listed training images a class, half of each class carved off for validation; 2 test images a class.
    assert labels_of(dm, "train") == labels_of(dm, "val") == {0: 2, 1: 2, 2: 2}
    assert labels_of(dm, "test") == {0: 2, 1: 2, 2: 2}
    again = caltech_dm(tmp_path)
    again.setup()
    assert again.cache_hit and torch.equal(again.splits()["val"].images, dm.splits()["val"].images)


def test_caltech_course_layout_with_a_missing_listed_file_is_an_error(tmp_path: Path) -> None:
    categories = caltech_folders(tmp_path)
    (tmp_path / "train.txt").write_text("accordion/image_0001.jpg\nanchor/image_0001.jpg\nairplanes/image_0001.jpg\n")
    (tmp_path / "test.txt").write_text("accordion/image_0002.jpg\n")
    (categories / "anchor" / "image_0001.jpg").unlink()
    with pytest.raises(DataError, match=r"1 file\(s\) listed in train.txt/test.txt are missing.*anchor/image_0001.jpg"):
        caltech_dm(tmp_path).setup()


def test_caltech_split_file_naming_an_unknown_class_is_an_error(tmp_path: Path) -> None:
    caltech_folders(tmp_path)
    (tmp_path / "train.txt").write_text("accordion/image_0001.jpg\nbanjo/image_0001.jpg\n")
    (tmp_path / "test.txt").write_text("accordion/image_0002.jpg\n")
    with pytest.raises(DataError, match="banjo"):
        caltech_dm(tmp_path).setup()


def test_caltech_torchvision_layout_holds_out_a_seeded_stratified_test_split(tmp_path: Path) -> None:
    caltech_folders(tmp_path / "caltech101")
    dm = caltech_dm(tmp_path, test_fraction=0.5, seed=3)
    dm.setup()
    assert labels_of(dm, "test") == {0: 3, 1: 3, 2: 3}
    # The other 3 a class are for training, of which round(0.5 * 3) = 2 are carved off for validation.
    assert labels_of(dm, "val") == {0: 2, 1: 2, 2: 2} and labels_of(dm, "train") == {0: 1, 1: 1, 2: 1}
    same = caltech_dm(tmp_path, test_fraction=0.5, seed=3)
    same.setup()
    assert torch.equal(same.splits()["test"].images, dm.splits()["test"].images)
    other = caltech_dm(tmp_path, test_fraction=0.5, seed=4, cache_dir=tmp_path / "cache2")
    other.setup()
    assert not torch.equal(other.splits()["test"].images, dm.splits()["test"].images)


def test_a_half_extracted_caltech_is_an_error_not_a_smaller_dataset(tmp_path: Path) -> None:
    categories = caltech_folders(tmp_path)
    for path in sorted((categories / "anchor").iterdir())[:2]:
        path.unlink()
    with pytest.raises(DataError, match=r"16 images \(expected 18\).*partial"):
        caltech_dm(tmp_path).setup()
    shutil.rmtree(categories / "anchor")
    with pytest.raises(DataError, match=r"2 classes \(expected 3\)"):
        caltech_dm(tmp_path).setup()


def test_caltech_offline_download_error_names_dataset_path_and_ways_out(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(caltech.datasets.Caltech101, "download", offline)
    dm = caltech_dm(tmp_path / "empty", download=True)
    with pytest.raises(DataError) as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert "\n" not in message
    assert "Caltech-101" in message and str((tmp_path / "empty" / "caltech101").resolve()) in message
    assert "could not be downloaded" in message and "data=synthetic" in message and "data=image_folder" in message
    with pytest.raises(DataError, match=r"is not there \(data.download=false\)"):
        caltech_dm(tmp_path / "empty").setup()


def test_a_failed_caltech_download_leaves_no_folder_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(caltech.datasets.Caltech101, "download", offline)  # after torchvision made caltech101/
    with pytest.raises(DataError, match="could not be downloaded"):
        caltech_dm(tmp_path / "new" / "data", download=True).prepare_data()
    assert sorted(tmp_path.iterdir()) == []


def test_a_root_inside_the_caltech_tree_is_named_and_nothing_is_written_into_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(caltech.datasets.Caltech101, "download", offline)
    categories = caltech_folders(tmp_path / "data")
    before = sorted(categories.rglob("*"))
    for root in (categories, categories / "accordion"):
        with pytest.raises(DataError) as caught:
            caltech_dm(root, download=True).prepare_data()
        message = str(caught.value)
        assert message.startswith(f"data.root={root} points inside the Caltech-101 tree at {categories}")
        assert message.endswith(f"use its parent: data.root={tmp_path / 'data'}") and "\n" not in message
    assert sorted(categories.rglob("*")) == before  # no caltech101/ folder among the classes
    (categories / "caltech101").mkdir()  # what an earlier download into the tree left
    with pytest.raises(DataError, match=r"caltech101: an empty folder among the classes.*; remove it$"):
        caltech_dm(tmp_path / "data").setup()
    (categories / "caltech101").rmdir()
    dm = caltech_dm(tmp_path / "data", download=True)
    dm.prepare_data()
    dm.setup()
    assert dm.classes == CALTECH_CLASSES


# ---------------------------------------------------------------------------------------------
# Oxford-17 Flowers
# ---------------------------------------------------------------------------------------------


def flowers_dm(root: Path, **kwargs: object) -> Flowers17DataModule:
    settings = {"num_classes": 17, "image_size": 6, "stored_size": 6, "batch_size": 4, "download": False,
                "val_fraction": 1 / 3, "cache_dir": root.parent / f"{root.name}-cache"}  # fmt: skip
    return Flowers17DataModule(root=root, **{**settings, **kwargs})


def test_flowers_official_splits_from_datasplits_mat(flowers_archive: Path, tmp_path: Path) -> None:
    root = tmp_path / "with_splits"
    root.mkdir()
    (root / "jpg").symlink_to(flowers_archive / "jpg")
    numbers = np.arange(1, 1361).reshape(17, 80)
    tables = {}
    for k in (1, 2, 3):
        order = np.roll(numbers, 10 * k, axis=1)
        tables |= {
            f"trn{k}": order[:, :40].ravel(),
            f"val{k}": order[:, 40:60].ravel(),
            f"tst{k}": order[:, 60:].ravel(),
        }
    savemat(root / "datasplits.mat", tables)
    dm = flowers_dm(root, split=2)
    dm.setup()
    assert dm.classes[0] == "daffodil" and len(dm.classes) == 17
    for split, per_class in (("train", 40), ("val", 20), ("test", 20)):
        assert labels_of(dm, split) == dict.fromkeys(range(17), per_class)
    # image_0001..0080 are class 0: its colour is (0, 60, 200) whatever the split.
    test = dm.splits()["test"]
    assert test.images[test.labels == 16][:, 0].float().mean().item() == pytest.approx(16 * 15, abs=3)


def test_flowers_unreadable_or_incomplete_datasplits_mat_is_an_error(flowers_archive: Path, tmp_path: Path) -> None:
    root = tmp_path / "bad_splits"
    root.mkdir()
    (root / "jpg").symlink_to(flowers_archive / "jpg")
    for garbage in (b"not a MATLAB file " * 20, b"short"):  # scipy: ValueError, then MatReadError
        (root / "datasplits.mat").write_bytes(garbage)
        with pytest.raises(
            DataError, match=r"datasplits.mat: not a readable MATLAB file .*delete it to use a seeded split"
        ):
            flowers_dm(root).setup()
    numbers = np.arange(1, 1361)
    savemat(root / "datasplits.mat", {"trn1": numbers[:680], "val1": numbers[680:1020]})
    with pytest.raises(DataError, match=r"datasplits.mat: no 'tst1' split in it \(found \['trn1', 'val1'\]\)"):
        flowers_dm(root).setup()


def test_flowers_without_split_file_is_split_by_seed_40_20_20(flowers_archive: Path) -> None:
    dm = flowers_dm(flowers_archive, seed=5)
    dm.setup()
    for split, per_class in (("train", 40), ("val", 20), ("test", 20)):
        assert labels_of(dm, split) == dict.fromkeys(range(17), per_class)


def test_a_half_extracted_flowers_archive_is_an_error(tmp_path: Path) -> None:
    for number in range(1, 1360):  # one image short
        save_jpeg(tmp_path / "jpg" / f"image_{number:04d}.jpg", (1, 2, 3), size=(2, 2))
    with pytest.raises(DataError, match=r"1359 of the 1360 images.*image_1360.jpg"):
        flowers_dm(tmp_path).setup()


def test_flowers_class_folder_tree_with_any_names(tmp_path: Path) -> None:
    for c, name in enumerate(["Blue bells", "roses", "Sun-flowers"]):
        for i in range(8):
            save_jpeg(tmp_path / name / f"{i}.JPG", (c * 80, i, 0))
    dm = flowers_dm(tmp_path, num_classes=3, expected_classes=None, test_fraction=0.25, val_fraction=0.5)
    dm.setup()
    assert dm.classes == ["Blue bells", "Sun-flowers", "roses"]
    assert labels_of(dm, "test") == {0: 2, 1: 2, 2: 2}
    assert labels_of(dm, "train") == labels_of(dm, "val") == {0: 3, 1: 3, 2: 3}


def test_flowers_class_tree_count_stays_unchecked_after_dropping_an_empty_class(tmp_path: Path) -> None:
    for c, name in enumerate(["roses", "tulips"]):
        for i in range(4):
            save_jpeg(tmp_path / name / f"{i}.jpg", (c * 80, i, 0))
    (tmp_path / "empty").mkdir()
    dm = flowers_dm(tmp_path, num_classes=2, expected_classes=None, skip_bad_files=True, val_fraction=0.0)
    dm.setup()  # the archive's 1360 images are not expected of a class-folder tree
    assert dm.classes == ["roses", "tulips"]


def test_flowers_offline_download_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(flowers, "download_and_extract_archive", offline)
    with pytest.raises(
        DataError, match=r"Oxford-17 Flowers is not in .*jpg and could not be downloaded.*17flowers.tgz"
    ):
        flowers_dm(tmp_path / "nothing", download=True).prepare_data()


def test_flowers_downloads_only_into_a_new_or_empty_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(flowers, "download_and_extract_archive", offline)
    (tmp_path / "shared" / "other_dataset").mkdir(parents=True)
    (tmp_path / "shared" / "17flowers.tgz").write_bytes(b"an earlier attempt's archive")
    with pytest.raises(DataError, match=r"shared is not empty \(holds other_dataset\); .*new or empty folder"):
        flowers_dm(tmp_path / "shared", download=True).prepare_data()
    jpg = tmp_path / "flowers17" / "jpg"
    save_jpeg(jpg / "image_0001.jpg", (1, 2, 3))
    with pytest.raises(
        DataError, match=rf"points inside the Oxford-17 Flowers tree .*data.root={tmp_path / 'flowers17'}$"
    ):
        flowers_dm(jpg, download=True).prepare_data()
    assert sorted(p.name for p in jpg.iterdir()) == ["image_0001.jpg"]
    shutil.rmtree(tmp_path / "shared" / "other_dataset")  # only the download's own archive left: it may go on
    with pytest.raises(DataError, match="could not be downloaded"):
        flowers_dm(tmp_path / "shared", download=True).prepare_data()


# ---------------------------------------------------------------------------------------------
# ants / bees
# ---------------------------------------------------------------------------------------------


def test_hymenoptera_reports_val_as_test_and_explains_offline(tmp_path: Path, monkeypatch) -> None:
    for split in ("train", "val"):
        for c, name in enumerate(("ants", "bees")):
            for i in range(3):
                save_jpeg(tmp_path / "hym" / split / name / f"{i}.jpg", (c * 200, i, 9))
    dm = HymenopteraDataModule(root=tmp_path / "hym", num_classes=2, image_size=8, stored_size=8, batch_size=2)
    dm.setup()
    assert dm.splits()["test"] is dm.splits()["val"] and len(dm.splits()["val"]) == 6

    monkeypatch.setattr(folders, "download_and_extract_archive", offline)
    missing = HymenopteraDataModule(root=tmp_path / "none", num_classes=2, image_size=8)
    with pytest.raises(DataError, match=r"ants/bees .*could not be downloaded.*hymenoptera_data.zip"):
        missing.prepare_data()


def test_hymenoptera_downloads_into_root_itself_and_never_into_a_tree(tmp_path: Path, monkeypatch) -> None:
    def extract(url: str, download_root: str, **kwargs: object) -> None:  # what the zip holds
        for split in ("train", "val"):
            for name in ("ants", "bees"):
                save_jpeg(Path(download_root) / "hymenoptera_data" / split / name / "0.jpg", (9, 9, 9))

    monkeypatch.setattr(folders, "download_and_extract_archive", extract)
    root = tmp_path / "ants_bees"
    HymenopteraDataModule(root=root, num_classes=2, image_size=8).prepare_data()
    assert sorted(p.name for p in root.iterdir()) == ["train", "val"]
    assert (root / "val" / "bees" / "0.jpg").is_file()
    with pytest.raises(DataError, match=rf"points inside the ants/bees \(hymenoptera\) tree .*data.root={root}$"):
        HymenopteraDataModule(root=root / "train", num_classes=2, image_size=8).prepare_data()


def test_cifar_never_downloads_into_a_folder_of_images(tmp_path: Path, monkeypatch) -> None:
    save_jpeg(tmp_path / "photos" / "cat" / "0.jpg", (1, 2, 3))
    with pytest.raises(DataError, match=r"^data.root=.*photos already holds images \(e.g. .*0.jpg\)"):
        CIFARDataModule(root=tmp_path / "photos", num_classes=10).prepare_data()
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat"]


def test_a_short_run_on_the_real_ants_and_bees_loads_the_gif(make_cfg, hymenoptera: Path, tmp_path: Path) -> None:
    gif = hymenoptera / "train" / "ants" / "imageNotFound.gif"
    assert gif.is_file()
    cfg = make_cfg(
        "data=hymenoptera", f"data.root={hymenoptera}", "data.stored_size=40", "data.batch_size=35",
        "model=convnet", "model.input_size=32", "trainer=cpu", "trainer.max_epochs=1",
        "~callbacks.progress_bar", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    )  # fmt: skip
    metrics = run(cfg)
    assert metrics["status"] == "ok" and metrics["test_acc"] is not None
    data = metrics["data"]
    assert data["splits"] == {"train": 245, "val": 153, "test": 153}  # the GIF is one of the 245
    assert data["bad_files"] == 0 and data["files"] == 398
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["data"]["splits"]["train"] == 245


# ---------------------------------------------------------------------------------------------
# bad input in a run: skipped files are counted in metrics.json
# ---------------------------------------------------------------------------------------------


def test_skipped_bad_files_and_empty_classes_are_counted_in_metrics(make_cfg, tmp_path: Path) -> None:
    root = tmp_path / "messy"
    for c, name in enumerate(("cat", "dog")):
        for i in range(6):
            save_jpeg(root / "train" / name / f"{i}.jpg", (c * 200, i * 20, 50))
            save_jpeg(root / "test" / name / f"{i}.JPEG", (c * 200, i * 20, 50))
    (root / "train" / "empty_class").mkdir()
    (root / "train" / "cat" / "zero.jpg").write_bytes(b"")
    (root / "train" / "dog" / "truncated.jpg").write_bytes((root / "train" / "dog" / "0.jpg").read_bytes()[:40])
    common = [
        "data=image_folder", f"data.root={root}", "data.stored_size=8", "data.batch_size=4", "model=convnet",
        "model.input_size=8", "model.layers=[{out_channels:4,kernel_size:3,padding:1}]", "model.hidden=[8]",
        "model.dropout=[0.0]", "trainer=cpu", "trainer.max_epochs=1", "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "~callbacks.dataset_views",
    ]  # fmt: skip
    with pytest.raises(DataError, match="empty_class"):
        run(make_cfg(*common, "data.num_classes=3"))
    metrics = run(make_cfg(*common, "data.num_classes=2", "data.skip_bad_files=true"))
    assert metrics["status"] == "ok"
    assert metrics["data"]["bad_files"] == 2
    assert {Path(p).name for p in metrics["data"]["bad_file_examples"]} == {"zero.jpg", "truncated.jpg"}


# ---------------------------------------------------------------------------------------------
# augmentation presets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_augmentation_preset_is_per_sample_and_keeps_shape(make_cfg, name: str) -> None:
    cfg = make_cfg("data=synthetic", f"aug={name}", "data.stored_size=32", "model.input_size=24")
    dm = instantiate(cfg.data)
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    batch = image.expand(16, -1, -1, -1).contiguous()
    out = dm.transform(batch, train=True)
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    identical = all(torch.equal(out[0], out[i]) for i in range(1, 16))
    assert identical == (name == "none")
    # The preset as configured; a null pad becomes the dataset's own (synthetic: CIFAR's 0.125).
    assert dm.transform.augment == dataclasses.replace(preset(name), pad=0.125)


def test_color_presets_change_colour_and_geometric_ones_do_not() -> None:
    torch.manual_seed(1)
    batch = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    means = {}
    for name in ("geometric", "geometric_color", "geometric_gray_color"):
        transform = DeviceTransform(16, normalize="half", augment=preset(name))
        out = transform.denormalize(transform(batch, train=True))
        means[name] = out.mean((2, 3))
        spread = (out.max(1).values - out.min(1).values).mean((1, 2))
        means[name + "_gray"] = (spread < 1e-6).float().mean()
    assert means["geometric_gray"] == 0 and means["geometric_color_gray"] == 0
    assert 0.05 < means["geometric_gray_color_gray"] < 0.45  # grayscale p=0.2 of 64 samples


def test_the_augmentation_benchmark_runs_on_cpu() -> None:
    rows = measure("cpu", batch=2, stored=16, output=12, repeats=1, kornia=False)
    assert [row["preset"] for row in rows] == list(PRESETS)
    assert all(row["images_per_s"] > 0 for row in rows)


# ---------------------------------------------------------------------------------------------
# dataset views
# ---------------------------------------------------------------------------------------------


def test_dataset_views_are_pngs_and_tensorboard_images_and_leave_training_alone(make_cfg, tmp_path: Path) -> None:
    with_views = run(make_cfg("trainer.deterministic=true", tiny=True))
    run_dir = tmp_path / "run"
    for name in ("class_distribution.png", "train_samples.png"):
        with Image.open(run_dir / name) as image:
            assert image.size[0] > 100 and image.size[1] > 100
    tags = set()
    for events in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["images"])
    assert {"data/class_distribution", "data/train_samples"} <= tags

    # A dir of its own: in the same one, resume=auto would find the finished run and train nothing.
    other_dir = f"paths.output_dir={tmp_path / 'without'}"
    without = run(make_cfg("trainer.deterministic=true", "~callbacks.dataset_views", other_dir, tiny=True))
    assert "resumed_from" not in without
    assert [r["val/acc"] for r in with_views["history"]] == [r["val/acc"] for r in without["history"]]
