"""DeviceDataModule through SyntheticDataModule and a fixed dataset: splits, loaders, ranks, transfer hooks."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from alexnet_study.data import (
    Augment,
    Dataset,
    DeviceTransform,
    Split,
)
from alexnet_study.errors import ConfigError, DataError

from .conftest import FixedDataModule, make_split, random_images, sorted_rows, stub_trainer, synthetic

# DeviceDataModule (through SyntheticDataModule and a fixed dataset)
# ---------------------------------------------------------------------------------------------


def test_setup_carves_a_stratified_val_split_when_there_is_none() -> None:
    dm = synthetic(train_size=40, val_size=0, val_fraction=0.2)
    dm.setup("fit")
    splits = dm.splits()
    assert set(splits) == {"train", "val", "test"}
    assert Counter(splits["val"].labels.tolist()) == {c: 2 for c in range(4)}  # round(0.2 * 10)
    assert Counter(splits["train"].labels.tolist()) == {c: 8 for c in range(4)}
    # the carved split is a partition of the generated training images
    whole = synthetic(train_size=40, val_size=0, val_fraction=0.0)
    whole.setup()
    carved = torch.cat([splits["train"].images, splits["val"].images])
    assert sorted_rows(carved) == sorted_rows(whole.splits()["train"].images)


def test_setup_keeps_the_datasets_own_val_split() -> None:
    dm = synthetic(train_size=40, val_size=12, val_fraction=0.2)
    dm.setup()
    assert len(dm.splits()["train"]) == 40 and len(dm.splits()["val"]) == 12


def test_no_val_split_without_val_fraction() -> None:
    dm = synthetic(train_size=40, val_size=0, test_size=0, val_fraction=0.0)
    dm.setup()
    assert set(dm.splits()) == {"train"}
    assert dm.val_dataloader() == []
    assert dm.test_dataloader() == [] and dm.predict_dataloader() == []


def test_num_classes_mismatch_names_the_count_found() -> None:
    dataset = Dataset(train=make_split(6, num_classes=3), classes=["ant", "bee", "cat"])
    dm = FixedDataModule(dataset, num_classes=5, batch_size=2)
    with pytest.raises(DataError, match=r"found 3 classes.*data\.num_classes=5.*data\.num_classes=3"):
        dm.setup()


def test_splits_and_classes_need_setup() -> None:
    dm = synthetic()
    with pytest.raises(RuntimeError, match="setup"):
        dm.splits()
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.classes


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_size": 0},
        {"batch_size": True},
        {"batch_size": 2.5},
        {"eval_batch_size": -3},
        {"val_fraction": 1.0},
        {"val_fraction": -0.1},
        {"normalize": "nope"},
        {"eval_crop": 0.0},
    ],
    ids=str,
)
def test_datamodule_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        synthetic(**kwargs)


def test_eval_batch_size_zero_is_rejected() -> None:
    with pytest.raises(ConfigError):
        synthetic(eval_batch_size=0)


def test_drop_last_with_a_batch_larger_than_the_split_is_a_config_error() -> None:
    dm = synthetic(train_size=20, val_size=0, val_fraction=0.0, batch_size=32)
    dm.setup()
    with pytest.raises(ConfigError, match=r"batch_size=32.*train split.*20 images"):
        dm.train_dataloader()
    lenient = synthetic(train_size=20, val_size=0, val_fraction=0.0, batch_size=32, drop_last=False)
    lenient.setup()
    assert len(lenient.train_dataloader()) == 1


def test_dataloaders_cover_their_splits() -> None:
    dm = synthetic(train_size=40, val_size=10, test_size=6, batch_size=8, eval_batch_size=4)
    dm.setup()
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert (len(train), len(val), len(test)) == (5, 3, 2)
    images, labels = next(iter(train))
    assert images.shape == (8, 3, 16, 16) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert sum(len(labels) for _, labels in val) == 10


def test_a_partial_evaluation_of_class_sorted_splits_samples_every_class() -> None:
    # Loaders return splits class by class; limit_val_batches / limit_test_batches take the first batches.
    sorted_split = Split(random_images(200, 4), torch.arange(10).repeat_interleave(20))
    dataset = Dataset(train=make_split(20), val=sorted_split, test=sorted_split, classes=[str(i) for i in range(10)])
    dm = FixedDataModule(dataset, num_classes=10, batch_size=2, eval_batch_size=20)
    dm.trainer = stub_trainer()
    dm.setup()
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        _, first = next(iter(loader))
        assert Counter(first.tolist()) == dict.fromkeys(range(10), 2)
        assert sorted(i for _, labels in loader for i in labels.tolist()) == sorted(sorted_split.labels.tolist())


def test_datamodule_loaders_split_the_data_between_ranks() -> None:
    dataset = Dataset(train=make_split(20), val=make_split(9), classes=[str(i) for i in range(20)])
    seen: dict[str, list[int]] = {"train": [], "val": []}
    for rank in range(2):
        dm = FixedDataModule(dataset, num_classes=20, batch_size=2, eval_batch_size=2)
        dm.trainer = stub_trainer(rank=rank, world_size=2)
        dm.setup()
        for name, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
            assert loader.sampler.rank == rank and loader.sampler.world_size == 2
            seen[name] += [i for _, labels in loader for i in labels.tolist()]
    assert sorted(seen["train"]) == list(range(20))
    assert sorted(seen["val"]) == list(range(9))


def test_val_as_test_copies_the_shared_split_to_the_device_once() -> None:
    dataset = Dataset(train=make_split(8), val=make_split(6), classes=[str(i) for i in range(8)])
    dm = FixedDataModule(dataset, num_classes=8, batch_size=2, val_as_test=True)
    dm.trainer = stub_trainer()
    dm.trainer.strategy.root_device = torch.device("meta")  # .to() makes a real copy, unlike on the CPU
    dm.setup()
    val, test = dm.val_dataloader(), dm.test_dataloader()
    assert val.split.images.device.type == "meta"
    assert test.split is val.split and test.split.images is val.split.images
    assert dm.train_dataloader().split is not val.split


def test_on_after_batch_transfer_without_a_trainer_applies_the_eval_transform() -> None:
    dm = synthetic(image_size=24, aug=Augment(hflip=1.0, random_crop=True, pad=0.125))
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    out, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert out.shape == (4, 3, 24, 24) and out.dtype == torch.float32
    assert torch.equal(out_labels, labels)
    assert torch.equal(out, DeviceTransform(24)(images))


def test_on_after_batch_transfer_augments_while_the_trainer_trains() -> None:
    dm = synthetic(image_size=16, aug=Augment(hflip=1.0))
    dm.trainer = stub_trainer(training=True)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    out, _ = dm.on_after_batch_transfer((images, labels), 0)
    torch.testing.assert_close(out, DeviceTransform(16)(images).flip(-1), rtol=0, atol=1e-4)
    dm.trainer.training = False
    assert torch.equal(dm.on_after_batch_transfer((images, labels), 0)[0], DeviceTransform(16)(images))


def test_synthetic_data_is_deterministic_for_a_data_seed() -> None:
    first, second, other = synthetic(data_seed=3), synthetic(data_seed=3), synthetic(data_seed=4)
    for dm in (first, second, other):
        dm.setup()
    for name in ("train", "val", "test"):
        a, b = first.splits()[name], second.splits()[name]
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(first.splits()["train"].images, other.splits()["train"].images)


def test_synthetic_classes_have_different_mean_images() -> None:
    dm = synthetic(train_size=200, num_classes=5, noise=20.0)
    dm.setup()
    train = dm.splits()["train"]
    assert dm.classes == [f"class_{i}" for i in range(5)]
    assert Counter(train.labels.tolist()) == {c: 40 for c in range(5)}
    means = torch.stack([train.images[train.labels == c].float().mean(0) for c in range(5)])
    gaps = torch.cdist(means.flatten(1), means.flatten(1)) / means[0].numel() ** 0.5  # RMS difference
    assert (gaps + torch.eye(5) * 1e9).min() > 10


def test_synthetic_rejects_empty_train_and_zero_size() -> None:
    with pytest.raises(ConfigError, match="train_size"):
        synthetic(train_size=0)
    with pytest.raises(ConfigError, match="stored_size"):
        synthetic(stored_size=0)


def test_setup_twice_does_not_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    dm = synthetic()
    calls = []
    original = dm.load
    monkeypatch.setattr(dm, "load", lambda: calls.append(1) or original())
    dm.setup("fit")
    train = dm.splits()["train"]
    dm.setup("test")
    assert len(calls) == 1
    assert dm.splits()["train"] is train


# ---------------------------------------------------------------------------------------------
