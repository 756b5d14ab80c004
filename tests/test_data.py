"""The data package: device transforms, augmentation, splits, samplers and every DataModule.

Everything runs on the CPU with tiny tensors and images generated in ``tmp_path``; nothing here
touches the network (CIFAR's download is monkeypatched to fail as it does offline).
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from PIL import Image
from torch.nn import functional as F

from alexnet_study.config.validate import validate_config
from alexnet_study.data import (
    Augment,
    CIFARDataModule,
    Dataset,
    DeviceBatchLoader,
    DeviceDataModule,
    DeviceTransform,
    EpochSampler,
    ImageFolderDataModule,
    Split,
    SyntheticDataModule,
    files,
    stratified_split,
)
from alexnet_study.data.transforms import NORMALIZATIONS
from alexnet_study.errors import ConfigError, DataError

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
# DeviceTransform
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "output", "eval_crop"),
    [(32, 32, 1.0), (32, 227, 1.0), (256, 224, 0.875), (256, 227, 1.0), (40, 16, 1.0), (8, 8, 0.5)],
)
@pytest.mark.parametrize("train", [False, True])
def test_transform_output_shape_and_dtype(stored: int, output: int, eval_crop: float, train: bool) -> None:
    transform = DeviceTransform(output, eval_crop=eval_crop, augment=Augment(hflip=0.5, random_crop=True, pad=0.125))
    out = transform(random_images(3, stored), train=train)
    assert out.shape == (3, 3, output, output)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_imagenet_normalization_maps_0_and_255_to_the_channel_extremes() -> None:
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    images[..., 2:] = 255
    out = DeviceTransform(4, normalize="imagenet")(images)
    mean, std = (torch.tensor(v) for v in NORMALIZATIONS["imagenet"])
    torch.testing.assert_close(out[0, :, 0, 0], (0 - mean) / std, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[0, :, 0, 3], (1 - mean) / std, rtol=0, atol=1e-6)
    assert out[0, :, :, :2].unique().numel() == 3  # one value per channel


@pytest.mark.parametrize(
    ("pixel", "expected"),
    [
        (0, -1.0),
        (255, 1.0),
    ],
)
def test_half_normalization_is_exact(pixel: int, expected: float) -> None:
    out = DeviceTransform(4, normalize="half")(torch.full((2, 3, 4, 4), pixel, dtype=torch.uint8))
    assert (out == torch.tensor(expected, dtype=torch.float32)).all(), out.unique().tolist()


def test_half_normalization_stays_within_a_float_step_of_plus_minus_one() -> None:
    out = DeviceTransform(4, normalize="half")(torch.tensor([0, 255], dtype=torch.uint8).repeat(1, 3, 4, 2))
    torch.testing.assert_close(out.amin(), torch.tensor(-1.0), rtol=0, atol=0)
    torch.testing.assert_close(out.amax(), torch.tensor(1.0), rtol=0, atol=2e-7)


def test_eval_resize256_centercrop224_is_the_exact_centre_crop() -> None:
    images = random_images(2, 256)
    out = DeviceTransform(224, eval_crop=224 / 256)(images)
    centre = images[..., 16:240, 16:240]
    assert torch.equal(out, DeviceTransform(224)(centre))  # no interpolation at all
    torch.testing.assert_close(out, normalized(centre), rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalize", ["imagenet", "half"])
def test_eval_at_the_stored_size_is_only_normalization(normalize: str) -> None:
    images = random_images(3, 24)
    out = DeviceTransform(24, normalize=normalize, eval_crop=1.0)(images)
    torch.testing.assert_close(out, normalized(images, normalize), rtol=0, atol=1e-5)


def test_eval_upsampling_of_a_uniform_image_stays_uniform() -> None:
    images = torch.full((2, 3, 32, 32), 100, dtype=torch.uint8)
    out = DeviceTransform(227)(images)
    torch.testing.assert_close(out, normalized(images[..., :1, :1]).expand_as(out), rtol=0, atol=1e-5)


def framed_photos(n: int = 2, side: int = 256, frame: int = 40) -> torch.Tensor:
    """uint8 photos with a white frame ``frame`` pixels wide around a black middle."""
    images = torch.full((n, 3, side, side), 255, dtype=torch.uint8)
    images[..., frame:-frame, frame:-frame] = 0
    return images


def test_eval_at_a_small_input_is_resize_and_centre_crop_of_the_whole_photo() -> None:
    images = framed_photos()
    transform = DeviceTransform(64, eval_crop=0.875)
    assert transform.resize_side == 73  # round(64 / 0.875)
    reference = F.interpolate(images.float(), size=(73, 73), mode="bilinear", antialias=True)[..., 4:68, 4:68]
    out = transform(images)
    torch.testing.assert_close(out, normalized(reference / 255.0 * 255.0), rtol=0, atol=1e-4)
    white = normalized(images[..., :1, :1]).view(-1)[0]
    # The frame of the photo is in view on every side; a centre patch of 64 of 256 would be all black.
    for edge in (out[0, 0, 0], out[0, 0, -1], out[0, 0, :, 0], out[0, 0, :, -1]):
        assert torch.isclose(edge, white, atol=1e-3).all()


@pytest.mark.parametrize("aug", [Augment(hflip=0.5, random_crop=True), Augment(hflip=0.5, scale=(0.7, 1.0))])
def test_training_crops_at_a_small_input_show_most_of_the_photo(aug: Augment) -> None:
    torch.manual_seed(0)
    out = DeviceTransform(64, eval_crop=0.875, augment=aug)(framed_photos(64), train=True)
    black, white = (
        normalized(torch.tensor(v, dtype=torch.uint8).view(1, 1, 1, 1).expand(1, 3, 1, 1))[0, 0] for v in (0, 255)
    )
    # Every crop shows the black middle at its centre and the white frame along all four edges.
    assert torch.isclose(out[:, 0, 28:36, 28:36], black.view(1, 1, 1), atol=1e-3).all()
    for edge in (out[:, 0, 0], out[:, 0, -1], out[:, 0, :, 0], out[:, 0, :, -1]):
        assert (edge > (black + white) / 2).any(dim=1).all()


def test_training_reduces_a_larger_stored_image_with_antialiasing_as_evaluation_does() -> None:
    # A one-pixel checkerboard is a uniform grey once reduced with antialiasing; sampling it
    # without (grid_sample alone) would give a noisy mix of black and white pixels.
    board = ((torch.arange(256).view(-1, 1) + torch.arange(256).view(1, -1)) % 2 * 255).to(torch.uint8)
    images = board.expand(4, 3, 256, 256).contiguous()
    transform = DeviceTransform(64, eval_crop=0.875, augment=Augment(hflip=1.0))
    for out in (transform(images), transform(images, train=True)):
        assert out.std(dim=(2, 3)).max() < 0.05, out.std(dim=(2, 3))


def test_cifar_upsampling_is_the_whole_image_resized_as_before() -> None:
    images = random_images(2, 32)
    out = DeviceTransform(227, eval_crop=1.0)(images)
    reference = F.interpolate(images.float(), size=(227, 227), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, normalized(reference), rtol=0, atol=1e-4)


def test_a_share_under_half_the_side_is_refused_or_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"^data\.eval_crop=0\.25: .*\[0\.5, 1\]") as caught:
        DeviceTransform(64, eval_crop=0.25)
    assert "\n" not in str(caught.value)
    with caplog.at_level("WARNING"):
        DeviceTransform(64, eval_crop=0.875, augment=Augment(scale=(0.05, 0.2)))
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "aug.scale=[0.05, 0.2]" in record.getMessage() and "under half" in record.getMessage()


@pytest.mark.parametrize(
    "images",
    [
        torch.zeros(2, 3, 8, 8),  # float
        torch.zeros(2, 3, 8, 8, dtype=torch.int64),
        torch.zeros(3, 8, 8, dtype=torch.uint8),  # not batched
    ],
    ids=["float32", "int64", "chw"],
)
def test_transform_rejects_anything_but_uint8_nchw(images: torch.Tensor) -> None:
    with pytest.raises(TypeError, match="uint8 NCHW"):
        DeviceTransform(8)(images)


@pytest.mark.parametrize(
    "kwargs",
    [{"output_size": 0}, {"eval_crop": 0.0}, {"eval_crop": 1.5}, {"normalize": "cifar"}],
    ids=["size0", "crop0", "crop1.5", "unknown-normalize"],
)
def test_transform_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        DeviceTransform(**{"output_size": 8, **kwargs})


# ---------------------------------------------------------------------------------------------
# Augment
# ---------------------------------------------------------------------------------------------


def test_augmentation_is_drawn_per_sample() -> None:
    torch.manual_seed(0)
    batch = random_images(1, 32).expand(64, -1, -1, -1).contiguous()
    transform = DeviceTransform(32, augment=Augment(hflip=0.5, random_crop=True, pad=0.125))
    out = transform(batch, train=True)
    assert out.shape == (64, 3, 32, 32) and out.dtype == torch.float32
    distinct = torch.unique(out.flatten(1), dim=0).shape[0]
    assert distinct == 64  # continuous shifts: every copy gets its own crop


def test_hflip_alone_gives_either_the_image_or_its_mirror_and_both_occur() -> None:
    torch.manual_seed(0)
    batch = random_images(1, 16).expand(64, -1, -1, -1).contiguous()
    transform = DeviceTransform(16, augment=Augment(hflip=0.5))
    out = transform(batch, train=True)
    plain, mirrored = transform(batch[:1]), transform(batch[:1]).flip(-1)
    is_plain = torch.isclose(out, plain, atol=1e-5).flatten(1).all(1)
    is_mirrored = torch.isclose(out, mirrored, atol=1e-5).flatten(1).all(1)
    assert (is_plain ^ is_mirrored).all()
    assert 10 < is_mirrored.sum() < 54


def test_the_warp_grid_is_a_buffer_that_follows_the_module_and_is_not_saved() -> None:
    transform = DeviceTransform(5, augment=Augment(hflip=1.0))
    points = transform.out_points
    assert points.shape == (1, 25, 3) and points.dtype == torch.float32
    centres = torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8])
    assert torch.allclose(points[0, :5, 0], centres) and torch.allclose(points[0, ::5, 1], centres)
    assert torch.equal(points[..., 2], torch.ones(1, 25))
    assert "out_points" not in transform.state_dict()
    assert transform.to("meta").out_points.device.type == "meta"


def test_training_randomness_follows_the_global_seed() -> None:
    transform = DeviceTransform(32, augment=Augment(hflip=0.5, random_crop=True, pad=0.125, scale=(0.5, 1.0)))
    images = random_images(8, 32)
    torch.manual_seed(123)
    first = transform(images, train=True)
    torch.manual_seed(123)
    assert torch.equal(first, transform(images, train=True))


@pytest.mark.parametrize("aug", [Augment(hflip=0.5, random_crop=True, pad=0.125), Augment(hflip=1.0, scale=(0.3, 0.9))])
def test_train_false_is_deterministic_and_equals_the_eval_transform(aug: Augment) -> None:
    images = random_images(8, 32)
    augmented = DeviceTransform(40, augment=aug)
    plain = DeviceTransform(40)
    first = augmented(images, train=False)
    assert torch.equal(first, augmented(images, train=False))
    assert torch.equal(first, plain(images))


def test_identity_augment_in_training_is_the_eval_transform() -> None:
    images = random_images(4, 32)
    transform = DeviceTransform(227, augment=Augment())
    assert torch.equal(transform(images, train=True), transform(images))


@pytest.mark.parametrize(
    ("stored", "output"),
    [
        (32, 32),
        (8, 8),
        (32, 227),
    ],
)
def test_hflip_without_shift_is_the_mirrored_eval_output(stored: int, output: int) -> None:
    images = random_images(4, stored)
    transform = DeviceTransform(output, augment=Augment(hflip=1.0))
    torch.testing.assert_close(transform(images, train=True), transform(images).flip(-1), rtol=0, atol=1e-4)


def test_upsampled_hflip_matches_the_mirrored_eval_output_away_from_the_border() -> None:
    images = random_images(4, 32)
    transform = DeviceTransform(227, augment=Augment(hflip=1.0))
    train, expected = transform(images, train=True), transform(images).flip(-1)
    torch.testing.assert_close(train[..., 8:-8, 8:-8], expected[..., 8:-8, 8:-8], rtol=0, atol=1e-4)


def test_pad_pads_with_zero_pixels_at_the_borders() -> None:
    torch.manual_seed(0)
    images = random_images(128, 32, low=50, high=200)  # no pixel normalizes to the padding value
    transform = DeviceTransform(32, augment=Augment(random_crop=True, pad=0.125))
    pad = padding_value().view(3, 1)

    def padded_edges(out: torch.Tensor) -> torch.Tensor:
        edges = [out[:, :, :, 0], out[:, :, :, -1], out[:, :, 0, :], out[:, :, -1, :]]  # each (N, 3, 32)
        return torch.stack([torch.isclose(e, pad, atol=1e-5).all(dim=(1, 2)) for e in edges], 1).any(1)

    assert not padded_edges(transform(images)).any()
    shifted = padded_edges(transform(images, train=True))
    assert shifted.any()


def test_shift_never_exceeds_the_padding() -> None:
    # A pixel shift of at most 0.125 * 32 = 4: the central 24x24 always comes from inside the image.
    torch.manual_seed(1)
    images = random_images(64, 32, low=50, high=200)
    out = DeviceTransform(32, augment=Augment(random_crop=True, pad=0.125))(images, train=True)
    inner = out[..., 4:-4, 4:-4]
    assert not torch.isclose(inner, padding_value().view(1, 3, 1, 1), atol=1e-3).all(1).any()


@pytest.mark.parametrize(("stored", "output"), [(32, 32), (32, 227), (64, 24)])
def test_random_resized_crops_keep_shape_and_stay_inside_the_image(stored: int, output: int) -> None:
    torch.manual_seed(0)
    images = random_images(16, stored, low=50, high=200)
    transform = DeviceTransform(output, augment=Augment(scale=(0.5, 1.0)))
    out = transform(images, train=True)
    assert out.shape == (16, 3, output, output) and out.dtype == torch.float32
    assert not torch.equal(out, transform(images))
    # Away from the outermost pixels, crops never reach outside the image (no padding).
    inner = out[..., 2:-2, 2:-2]
    assert not torch.isclose(inner, padding_value().view(1, 3, 1, 1), atol=1e-3).all(1).any()


def test_full_area_square_crop_is_the_eval_transform() -> None:
    images = random_images(4, 16)
    transform = DeviceTransform(16, augment=Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0)))
    torch.testing.assert_close(transform(images, train=True), transform(images), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hflip": 1.5},
        {"hflip": -0.1},
        {"pad": -0.1},
        {"pad": 1.5},
        {"rotation": 200.0},
        {"hue": 0.6},
        {"brightness": -0.1},
        {"scale": (0.9, 0.1)},
        {"scale": (0.0, 0.5)},
        {"scale": (0.5, 1.5)},
        {"ratio": (2.0, 1.0)},
        {"ratio": (0.0, 1.0)},
    ],
    ids=str,
)
def test_augment_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="aug\\."):
        Augment(**kwargs)


def test_augment_flags() -> None:
    assert not Augment().geometric and not Augment().color
    assert Augment(hflip=0.5).geometric
    assert Augment(random_crop=True).geometric
    assert Augment(scale=(0.5, 1.0)).geometric
    assert Augment(rotation=10.0).geometric and Augment(perspective=0.3).geometric
    assert Augment(hue=0.1).color and not Augment(hue=0.1).geometric


# ---------------------------------------------------------------------------------------------
# stratified_split
# ---------------------------------------------------------------------------------------------

CLASS_SIZES = {0: 3, 1: 10, 2: 25, 3: 7, 5: 1}  # unbalanced, and label 4 missing


@pytest.fixture
def unbalanced_labels() -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in CLASS_SIZES.items()])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(7))]


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.75])
def test_stratified_split_holds_out_round_fraction_of_each_class(
    unbalanced_labels: torch.Tensor, fraction: float
) -> None:
    kept, held = stratified_split(unbalanced_labels, fraction, seed=0)
    assert Counter(unbalanced_labels[held].tolist()) == {
        c: round(fraction * n) for c, n in CLASS_SIZES.items() if round(fraction * n)
    }
    assert set(kept.tolist()).isdisjoint(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(len(unbalanced_labels)))
    assert kept.dtype == held.dtype == torch.int64


def test_stratified_split_is_seeded(unbalanced_labels: torch.Tensor) -> None:
    torch.manual_seed(0)
    kept, held = stratified_split(unbalanced_labels, 0.3, seed=5)
    torch.manual_seed(1)  # the global RNG plays no part
    kept2, held2 = stratified_split(unbalanced_labels, 0.3, seed=5)
    assert torch.equal(kept, kept2) and torch.equal(held, held2)
    _, held_other = stratified_split(unbalanced_labels, 0.3, seed=6)
    assert not torch.equal(held, held_other)


def test_stratified_split_fraction_zero_holds_nothing(unbalanced_labels: torch.Tensor) -> None:
    kept, held = stratified_split(unbalanced_labels, 0.0, seed=0)
    assert held.numel() == 0
    assert torch.equal(kept, torch.arange(len(unbalanced_labels)))


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5])
def test_stratified_split_rejects_fractions_outside_0_1(unbalanced_labels: torch.Tensor, fraction: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(unbalanced_labels, fraction, seed=0)


# ---------------------------------------------------------------------------------------------
# Split, EpochSampler, DeviceBatchLoader
# ---------------------------------------------------------------------------------------------


def test_split_validates_and_converts() -> None:
    split = Split(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2], dtype=torch.int32))
    assert split.labels.dtype == torch.int64 and len(split) == 3
    assert torch.equal(split.subset(torch.tensor([2, 0])).labels, torch.tensor([2, 0]))
    with pytest.raises(TypeError):
        Split(torch.zeros(3, 3, 2, 2), torch.arange(3))
    with pytest.raises(TypeError):
        Split(torch.zeros(3, 2, 2, dtype=torch.uint8), torch.arange(3))
    with pytest.raises(ValueError):
        Split(torch.zeros(3, 3, 2, 2, dtype=torch.uint8), torch.arange(4))


def test_unshuffled_sampler_is_arange_every_epoch() -> None:
    sampler = EpochSampler(10, shuffle=False, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert torch.equal(sampler.indices(), torch.arange(10))


def test_shuffled_sampler_changes_with_the_epoch_and_is_reproducible() -> None:
    sampler = EpochSampler(50, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = sampler.indices()
        assert sorted(order.tolist()) == list(range(50))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert not torch.equal(orders[0], torch.arange(50))
    sampler.set_epoch(1)
    assert torch.equal(sampler.indices(), orders[1])
    fresh = EpochSampler(50, shuffle=True, seed=3)
    fresh.set_epoch(2)
    assert torch.equal(fresh.indices(), orders[2])
    other_seed = EpochSampler(50, shuffle=True, seed=4)
    other_seed.set_epoch(2)
    assert not torch.equal(other_seed.indices(), orders[2])


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("size", [12, 13, 14])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_are_disjoint_and_cover_every_index(world_size: int, size: int, shuffle: bool) -> None:
    parts = []
    for rank in range(world_size):
        sampler = EpochSampler(size, shuffle=shuffle, seed=1, rank=rank, world_size=world_size)
        sampler.set_epoch(4)
        indices = sampler.indices().tolist()
        assert len(indices) == len(sampler)
        parts.append(set(indices))
    assert sum(len(p) for p in parts) == size
    assert set().union(*parts) == set(range(size))


@pytest.mark.parametrize(
    ("size", "batch_size", "drop_last", "expected"),
    [(10, 4, False, 3), (10, 4, True, 2), (8, 4, False, 2), (8, 4, True, 2), (3, 4, False, 1), (3, 4, True, 0)],
)
def test_loader_length(size: int, batch_size: int, drop_last: bool, expected: int) -> None:
    loader = DeviceBatchLoader(make_split(size), batch_size, EpochSampler(size, shuffle=True), drop_last=drop_last)
    assert len(loader) == expected
    assert len(list(loader)) == expected


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_yields_every_sample_once_per_epoch(shuffle: bool) -> None:
    split = make_split(10)
    sampler = EpochSampler(10, shuffle=shuffle, seed=0)
    loader = DeviceBatchLoader(split, 4, sampler, drop_last=False)
    seen_orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        labels = []
        for images, batch_labels in loader:
            assert images.dtype == torch.uint8 and batch_labels.dtype == torch.int64
            assert images.shape[1:] == (3, 4, 4) and len(images) == len(batch_labels) <= 4
            assert torch.equal(images, split.images[batch_labels])  # images travel with their labels
            labels += batch_labels.tolist()
        assert sorted(labels) == list(range(10))
        seen_orders.append(labels)
    assert (seen_orders[0] != seen_orders[1]) == shuffle
    if not shuffle:
        assert seen_orders[0] == list(range(10))


def test_loader_drop_last_yields_only_full_batches() -> None:
    loader = DeviceBatchLoader(make_split(10), 4, EpochSampler(10, shuffle=True), drop_last=True)
    batches = [labels for _, labels in loader]
    assert [len(b) for b in batches] == [4, 4]
    assert len(set(torch.cat(batches).tolist())) == 8


@pytest.mark.parametrize("batch_size", [0, -1])
def test_loader_rejects_batch_size_below_one(batch_size: int) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        DeviceBatchLoader(make_split(4), batch_size, EpochSampler(4, shuffle=False))


def test_every_rank_runs_the_same_number_of_training_batches() -> None:
    split = make_split(11)
    lengths = {
        len(
            DeviceBatchLoader(split, 3, EpochSampler(11, shuffle=True, rank=r, world_size=2, even=True), drop_last=True)
        )
        for r in range(2)
    }
    assert len(lengths) == 1, lengths


# ---------------------------------------------------------------------------------------------
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
# ImageFolderDataModule
# ---------------------------------------------------------------------------------------------

SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP"}

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
CLASSES = ["ant", "cat", "zebra"]


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


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "images", TREE)


@pytest.fixture
def tree_with_val(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "images", TREE + VAL_TREE)


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
# The data/ and aug/ config groups instantiate these classes
# ---------------------------------------------------------------------------------------------


def test_synthetic_preset_with_flip_crop(make_cfg) -> None:
    cfg = make_cfg("data=synthetic", "aug=flip_crop", "model.input_size=64")
    dm = instantiate(cfg.data)
    assert isinstance(dm, SyntheticDataModule)
    assert dm.transform.augment == Augment(hflip=0.5, random_crop=True, pad=0.125)
    assert dm.transform.output_size == 64 and dm.seed == cfg.seed


def test_aug_none_preset_is_identity(make_cfg) -> None:
    dm = instantiate(make_cfg("data=synthetic", "aug=none").data)
    augment = dm.transform.augment
    assert not augment.geometric and not augment.color


def test_random_resized_crop_from_the_command_line(make_cfg) -> None:
    cfg = make_cfg("data=synthetic", "data.stored_size=16", "model.input_size=16", "+aug.scale=[0.5,1.0]")
    dm = instantiate(cfg.data)
    assert tuple(dm.transform.augment.scale) == (0.5, 1.0)
    out = dm.transform(random_images(4, 16), train=True)
    assert out.shape == (4, 3, 16, 16)


def test_bad_aug_value_from_the_command_line_is_a_config_error(make_cfg) -> None:
    with pytest.raises(InstantiationException) as info:
        instantiate(make_cfg("data=synthetic", "aug.hflip=1.5").data)
    assert isinstance(info.value.__cause__, ConfigError)
    assert "aug.hflip=1.5" in str(info.value.__cause__)


def test_image_folder_preset(make_cfg, tree: Path) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=3", "data.stored_size=8")
    dm = instantiate(cfg.data)
    assert isinstance(dm, ImageFolderDataModule)
    # Resize(259) + CenterCrop(227) of the whole photo, whatever its stored size (here 8x8).
    assert dm.transform.eval_crop == 0.875 and dm.transform.resize_side == 259 and dm.root == tree
    assert dm.cache_dir == Path(cfg.paths.cache_dir)
    dm.setup()
    assert dm.classes == CLASSES and dm.cache_hit is False


@pytest.mark.parametrize("input_size", [32, 64, 224])
def test_photo_presets_show_the_whole_photo_at_any_input_size(make_cfg, tree: Path, input_size: int) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}", f"model.input_size={input_size}")
    transform = instantiate(cfg.data).transform
    out = transform(framed_photos(side=256, frame=48))
    white = normalized(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).view(-1)[0]
    assert torch.isclose(out[0, 0, 0], white, atol=1e-3).all()  # the photo's frame, not a centre patch
    assert transform.resize_side == round(input_size / 0.875)


def test_image_folder_counts_its_class_folders_without_num_classes(make_cfg, tree: Path) -> None:
    cfg = make_cfg("data=image_folder", f"data.root={tree}")
    assert cfg.data.num_classes == 3 and cfg.model.num_classes == 3
    validate_config(cfg)
    (tree / "train" / "empty").mkdir()
    assert make_cfg("data=image_folder", f"data.root={tree}").data.num_classes == 4
    assert make_cfg("data=image_folder", f"data.root={tree}", "data.skip_bad_files=true").data.num_classes == 3


def test_image_folder_num_classes_given_is_checked_in_one_line(make_cfg, tree: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_config(make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=5"))
    assert str(caught.value).startswith("data.num_classes=5: ") and "has 3 class folders" in str(caught.value)
    assert "\n" not in str(caught.value)
    validate_config(make_cfg("data=image_folder", f"data.root={tree}", "data.num_classes=3"))


def test_image_folder_without_train_folder_and_num_classes_is_one_line(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^data.root=.*nowhere: no train/ folder there") as caught:
        validate_config(make_cfg("data=image_folder", f"data.root={tmp_path / 'nowhere'}"))
    assert "\n" not in str(caught.value)
