"""DeviceTransform and Augment: resize, crop, flip, warp and normalize on the device, per sample."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from alexnet_study.data import (
    Augment,
    DeviceTransform,
)
from alexnet_study.data.transforms import NORMALIZATIONS
from alexnet_study.errors import ConfigError

from .conftest import framed_photos, normalized, padding_value, random_images

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
