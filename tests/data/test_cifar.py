"""CIFARDataModule: the pickled batches, offline downloads, class counts."""

from __future__ import annotations

import pickle
import urllib.error
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_study.data import (
    CIFARDataModule,
)
from alexnet_study.errors import ConfigError, DataError

# CIFARDataModule
# ---------------------------------------------------------------------------------------------

CIFAR_CLASSES = [f"kind_{i}" for i in range(10)]


def write_fake_cifar10(root: Path, per_batch: int = 20) -> dict[str, np.ndarray]:
    """torchvision's pickle layout with tiny batches; returns the train/test rows and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written: dict[str, list] = {"train_data": [], "train_labels": [], "test_data": [], "test_labels": []}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)
        labels = [int(x) for x in rng.permutation(np.arange(per_batch) % 10)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        key = "test" if name == "test_batch" else "train"
        written[f"{key}_data"].append(data)
        written[f"{key}_labels"] += labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch}, f)
    return {
        "train_images": np.concatenate(written["train_data"]).reshape(-1, 3, 32, 32),
        "train_labels": np.array(written["train_labels"]),
        "test_images": np.concatenate(written["test_data"]).reshape(-1, 3, 32, 32),
        "test_labels": np.array(written["test_labels"]),
    }


@pytest.mark.parametrize(("variant", "title"), [("cifar10", "CIFAR-10"), ("cifar100", "CIFAR-100")])
def test_cifar_offline_download_is_a_one_line_data_error(
    offline: None, tmp_path: Path, variant: str, title: str
) -> None:
    root = tmp_path / "data"
    dm = CIFARDataModule(variant=variant, root=root, download=True, num_classes=10)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "\n" not in message
    for part in (title, str(root), "data.root", "data=image_folder", "data=synthetic", "name resolution"):
        assert part in message, part
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_cifar_without_download_and_without_files_is_a_data_error(offline: None, tmp_path: Path) -> None:
    root = tmp_path / "data"
    dm = CIFARDataModule(root=root, download=False, num_classes=10)
    dm.prepare_data()  # nothing to do without download
    with pytest.raises(DataError) as info:
        dm.setup()
    message = str(info.value)
    assert "\n" not in message
    assert "CIFAR-10" in message and str(root) in message and "data.download=false" in message


def test_cifar_loads_the_pickled_batches(no_checksums: None, offline: None, tmp_path: Path) -> None:
    written = write_fake_cifar10(tmp_path)
    dm = CIFARDataModule(root=tmp_path, num_classes=10, val_fraction=0.0, batch_size=8, image_size=32)
    dm.prepare_data()  # files present: no download attempted
    dm.setup()
    splits = dm.splits()
    assert set(splits) == {"train", "test"}
    assert dm.classes == CIFAR_CLASSES
    for name in ("train", "test"):
        split = splits[name]
        assert split.images.dtype == torch.uint8 and split.images.shape == (len(written[f"{name}_labels"]), 3, 32, 32)
        assert split.images.is_contiguous()
        assert torch.equal(split.images, torch.from_numpy(written[f"{name}_images"]))
        assert torch.equal(split.labels, torch.from_numpy(written[f"{name}_labels"]).long())
    assert len(splits["train"]) == 100 and len(splits["test"]) == 20


def test_cifar_carves_a_stratified_val_split(no_checksums: None, offline: None, tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path)
    dm = CIFARDataModule(root=tmp_path, num_classes=10, val_fraction=0.2, batch_size=8)
    dm.setup()
    splits = dm.splits()
    assert Counter(splits["val"].labels.tolist()) == {c: 2 for c in range(10)}  # 10 per class, 20%
    assert Counter(splits["train"].labels.tolist()) == {c: 8 for c in range(10)}
    assert len(splits["test"]) == 20


def test_cifar_num_classes_mismatch(no_checksums: None, offline: None, tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path)
    with pytest.raises(DataError, match="found 10 classes"):
        CIFARDataModule(root=tmp_path, num_classes=100, batch_size=8).setup()


def test_cifar_rejects_an_unknown_variant(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="variant"):
        CIFARDataModule(variant="cifar1000", root=tmp_path, num_classes=10)


# ---------------------------------------------------------------------------------------------
