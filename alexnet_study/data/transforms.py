"""Batched resize, augmentation and normalization on the training device.

Images arrive as uint8 NCHW batches at their stored size (32x32 for CIFAR, 256x256 for photos).
Whatever that size, the network sees the whole image at its input size: evaluation is
Resize(round(input / eval_crop)) + CenterCrop(input) (0.875 for photos: Resize(256) +
CenterCrop(224) at 224, Resize(73) + CenterCrop(64) at 64; 1.0 for CIFAR: the whole image
resized). In training, every geometric change (crop position and scale, flips, rotation,
perspective) and the resize to the model's input size are one per-sample homography applied by
a single ``grid_sample``, after one antialiased batch resize when the stored image is larger than
that Resize (``grid_sample`` does not antialias); colour changes (brightness, contrast,
saturation, hue, grayscale) are per-sample factors on the whole batch. Random numbers come from
``torch.rand`` on the batch's device: no host round trip, no PIL, no Python loop over samples.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from alexnet_study.errors import ConfigError

log = logging.getLogger(__name__)

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
# RGB -> YIQ (luma, then two chroma axes): a hue shift is a rotation of the chroma plane.
YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class Augment:
    """Per-sample training augmentation (the ``aug=`` config group). Probabilities are per sample.

    Geometry (one homography per sample):
      ``random_crop``: place the crop (the evaluation crop's share of the side, or ``scale``'s
      area) at a random position; ``pad``: zero padding around the image the crop may reach into, as a fraction of
      the stored side (``None``: the dataset's standard, 0.125 on CIFAR = "pad 4 and crop",
      0 on photos); ``scale``/``ratio``: random-resized crop area and aspect ranges;
      ``hflip``/``vflip``: flip probabilities; ``rotation``: maximum angle in degrees;
      ``perspective``: corner displacement (0..1 of the half side) applied with probability
      ``perspective_p``.
    Colour, in this order (torchvision's ColorJitter ranges): ``brightness``, ``contrast``,
    ``saturation`` (factor drawn from [1 - v, 1 + v]), ``hue`` (shift in [-v, v] of a turn, a
    rotation of the YIQ chroma plane), then ``grayscale`` (probability).
    """

    hflip: float = 0.0
    vflip: float = 0.0
    random_crop: bool = False
    pad: float | None = None
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation: float = 0.0
    perspective: float = 0.0
    perspective_p: float = 0.5
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    grayscale: float = 0.0

    def __post_init__(self) -> None:
        for key in ("hflip", "vflip", "perspective_p", "grayscale"):
            _check_range(key, getattr(self, key), 0.0, 1.0, "a probability")
        for key in ("perspective", "brightness", "contrast", "saturation"):
            _check_range(key, getattr(self, key), 0.0, 1.0, "a fraction")
        _check_range("hue", self.hue, 0.0, 0.5, "a fraction of a turn")
        _check_range("rotation", self.rotation, 0.0, 180.0, "an angle in degrees")
        if self.pad is not None:
            _check_range("pad", self.pad, 0.0, 1.0, "a fraction of the image side")
        if self.scale is not None and not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ConfigError(f"aug.scale={list(self.scale)}: must be [min, max] with 0 < min <= max <= 1")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"aug.ratio={list(self.ratio)}: must be [min, max] with 0 < min <= max")

    @property
    def geometric(self) -> bool:
        return bool(self.random_crop or self.scale or self.hflip or self.vflip or self.rotation or self.perspective)

    @property
    def color(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.hue or self.grayscale)


def _check_range(key: str, value: float, low: float, high: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"aug.{key}={value!r}: must be {what} in [{low:g}, {high:g}]")


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for a ``data.normalize`` name."""
    if name not in NORMALIZATIONS:
        raise ConfigError(f"data.normalize={name!r}: unknown; accepted: {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


# Below this share of the image's side the network sees a patch, not the photo.
MIN_SHARE = 0.5


class DeviceTransform(nn.Module):
    """uint8 NCHW batch at the stored size -> normalized float NCHW batch at ``output_size``.

    ``eval_crop`` is the share of the whole image's side that evaluation keeps, at any stored and
    output size: the image is resized to ``round(output_size / eval_crop)`` and the centre
    ``output_size`` square is kept (0.875 gives Resize(256) + CenterCrop(224); 1.0 the whole image
    resized, as for CIFAR). Training crops take that share of the side too, at a random position,
    unless ``augment.scale`` asks for random-resized crops (a share of the image's area).
    ``default_pad`` is the dataset's standard crop padding, used when ``augment.pad`` is None.
    """

    def __init__(
        self,
        output_size: int,
        normalize: str = "imagenet",
        eval_crop: float = 1.0,
        augment: Augment | None = None,
        default_pad: float = 0.0,
    ) -> None:
        super().__init__()
        if output_size < 1:
            raise ConfigError(f"image size {output_size}: must be >= 1")
        if not MIN_SHARE <= eval_crop <= 1.0:
            raise ConfigError(
                f"data.eval_crop={eval_crop}: must be a share of the image side in [{MIN_SHARE}, 1] (0.875: "
                "Resize + CenterCrop of the whole photo); below half the network sees a patch, not the photo"
            )
        mean, std = normalization(normalize)
        augment = augment or Augment()
        self.output_size = output_size
        self.eval_crop = eval_crop
        # The side the whole image is resized to before the centre crop (Resize(256) for 224).
        self.resize_side = round(output_size / eval_crop)
        self.augment = augment if augment.pad is not None else replace(augment, pad=default_pad)
        if self.augment.scale is not None and math.sqrt(self.augment.scale[1]) < MIN_SHARE:
            log.warning(
                "aug.scale=%s: every training crop is under half of the image's side (the network trains on patches)",
                list(self.augment.scale),
            )
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("gray", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1), persistent=False)
        # Constants of the per-sample maths, kept on the device (a tensor built from a Python
        # list at run time would be a host-to-device copy per batch).
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        self.register_buffer("corners", corners, persistent=False)
        # Pixel centres of the output in normalized coordinates (align_corners=False), as
        # homogeneous (u, v, 1) rows: the points every training warp maps, (1, HW, 3).
        axis = (torch.arange(output_size, dtype=torch.float32) * 2 + 1) / output_size - 1
        v, u = torch.meshgrid(axis, axis, indexing="ij")
        self.register_buffer("out_points", torch.stack([u, v, torch.ones_like(u)], -1).view(1, -1, 3), persistent=False)
        self.register_buffer("to_yiq", torch.tensor(YIQ), persistent=False)
        self.register_buffer("from_yiq", torch.linalg.inv(torch.tensor(YIQ)), persistent=False)

    def forward(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"expected a uint8 NCHW batch, got {images.dtype} with shape {tuple(images.shape)}")
        x = self._geometry(images) if train and self.augment.geometric else self._center(images)
        x = x.div_(255.0)  # a fresh float tensor in both paths, so in-place is safe
        if train and self.augment.color:
            x = self._color(x)
        # Exact: 0 and 255 map to (0 - mean) / std and (1 - mean) / std.
        return x.sub_(self.mean).div_(self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of the normalization: a [0, 1] image batch for display."""
        return (x * self.std + self.mean).clamp_(0.0, 1.0)

    def describe(self, height: int, width: int) -> str:
        """What evaluation does to a ``height`` x ``width`` stored image, in words, for the log."""
        return (
            f"evaluation: the whole {height}x{width} image resized to {self.resize_side} (shorter side), centre "
            f"{self.output_size}x{self.output_size} crop ({self.eval_crop:.1%} of the side)"
        )

    # -- evaluation --------------------------------------------------------------------------
    def _center(self, images: torch.Tensor) -> torch.Tensor:
        """Resize(resize_side) + CenterCrop(output_size), as torchvision's evaluation presets."""
        x = self._resized(images, self.resize_side)
        height, width = x.shape[-2:]
        top, left = (height - self.output_size) // 2, (width - self.output_size) // 2
        return x[..., top : top + self.output_size, left : left + self.output_size]

    @staticmethod
    def _resized(images: torch.Tensor, side: int) -> torch.Tensor:
        """The batch as float with its shorter side resized to ``side`` (antialiased when reducing)."""
        height, width = images.shape[-2:]
        size = (round(height * side / min(height, width)), round(width * side / min(height, width)))
        x = images.float()
        if size == (height, width):
            return x
        reduce = size[0] < height or size[1] < width
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=reduce)

    # -- training: geometry ------------------------------------------------------------------
    def _geometry(self, images: torch.Tensor) -> torch.Tensor:
        n, device, aug = images.shape[0], images.device, self.augment
        rand = torch.rand(n, 8, device=device)
        # Half sides of the crop window in normalized [-1, 1] input coordinates.
        if aug.scale is not None:
            area = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * rand[:, 0]
            log_lo, log_hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
            ratio = torch.exp(log_lo + (log_hi - log_lo) * rand[:, 1])
            half_w = torch.sqrt(area * ratio).clamp(max=1.0)
            half_h = torch.sqrt(area / ratio).clamp(max=1.0)
        else:
            # The evaluation crop's exact share of the resized side (64 of 73, not 0.875).
            half_w = half_h = torch.full((n,), self.output_size / self.resize_side, device=device)
        center_x = center_y = torch.zeros(n, device=device)
        if aug.random_crop or aug.scale is not None:
            reach = 2.0 * (aug.pad or 0.0)
            center_x = (2.0 * rand[:, 2] - 1.0) * (1.0 - half_w + reach)
            center_y = (2.0 * rand[:, 3] - 1.0) * (1.0 - half_h + reach)
        flip_x = torch.where(rand[:, 4] < aug.hflip, -1.0, 1.0)
        flip_y = torch.where(rand[:, 5] < aug.vflip, -1.0, 1.0)
        angle = (2.0 * rand[:, 6] - 1.0) * math.radians(aug.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)

        # output (u, v) -> input (x, y): translate . rotate . scale-and-flip . perspective
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        sx, sy = half_w * flip_x, half_h * flip_y
        affine = torch.stack(
            [
                torch.stack([cos * sx, -sin * sy, center_x], 1),
                torch.stack([sin * sx, cos * sy, center_y], 1),
                torch.stack([zero, zero, one], 1),
            ],
            1,
        )
        if aug.perspective:
            affine = affine @ self._perspective(n, device, apply=rand[:, 7] < aug.perspective_p)
        # grid_sample does not antialias: a stored image larger than the evaluation Resize is first
        # reduced to it (one batched resize), so crops sample an image near the output's resolution.
        source = images.float()
        if min(images.shape[-2:]) > self.resize_side:
            source = self._resized(images, self.resize_side)
        return self._warp(source, affine)

    def _perspective(self, n: int, device: torch.device, apply: torch.Tensor) -> torch.Tensor:
        """Homographies taking the output square's corners to corners moved inwards at random."""
        corners = self.corners
        inward = torch.rand(n, 4, 2, device=device) * self.augment.perspective * apply.view(n, 1, 1)
        moved = corners * (1.0 - inward)
        # Solve for h (8 unknowns, h33 = 1) from the 4 correspondences corners -> moved.
        u, v = corners[:, 0].expand(n, 4), corners[:, 1].expand(n, 4)
        x, y = moved[..., 0], moved[..., 1]
        zeros, ones = torch.zeros_like(u), torch.ones_like(u)
        rows_x = torch.stack([u, v, ones, zeros, zeros, zeros, -u * x, -v * x], -1)
        rows_y = torch.stack([zeros, zeros, zeros, u, v, ones, -u * y, -v * y], -1)
        system = torch.cat([rows_x, rows_y], 1)  # (n, 8, 8)
        target = torch.cat([x, y], 1).unsqueeze(-1)  # (n, 8, 1)
        # solve_ex: no error check, so no host sync (these systems are never singular).
        h = torch.linalg.solve_ex(system, target)[0].squeeze(-1)
        return torch.cat([h, torch.ones(n, 1, device=device)], 1).view(n, 3, 3)

    def _warp(self, images: torch.Tensor, homography: torch.Tensor) -> torch.Tensor:
        """Sample the float batch ``images`` at the homography's image of the output pixels."""
        n, size = images.shape[0], self.output_size
        mapped = self.out_points @ homography.transpose(1, 2)  # (n, HW, 3)
        grid = (mapped[..., :2] / mapped[..., 2:]).view(n, size, size, 2)
        # Inside the image, clamp to the border as F.interpolate does (no dark frame when
        # upsampling); beyond its edges (padding, rotation corners) the crop sees zeros.
        x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        outside = (grid.abs() > 1.0).any(dim=-1).unsqueeze(1)
        return x.masked_fill_(outside, 0.0)

    # -- training: colour --------------------------------------------------------------------
    def _color(self, x: torch.Tensor) -> torch.Tensor:
        aug, n = self.augment, x.shape[0]
        rand = torch.rand(n, 5, 1, 1, 1, device=x.device)
        if aug.brightness:
            x = (x * (1.0 + (2.0 * rand[:, 0] - 1.0) * aug.brightness)).clamp_(0.0, 1.0)
        if aug.contrast:
            mean = (x * self.gray).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = torch.lerp(mean, x, 1.0 + (2.0 * rand[:, 1] - 1.0) * aug.contrast).clamp_(0.0, 1.0)
        if aug.saturation:
            gray = (x * self.gray).sum(1, keepdim=True)
            x = torch.lerp(gray, x, 1.0 + (2.0 * rand[:, 2] - 1.0) * aug.saturation).clamp_(0.0, 1.0)
        if aug.hue:
            x = self._rotate_hue(x, (2.0 * rand[:, 3].view(n) - 1.0) * aug.hue * 2.0 * math.pi)
        if aug.grayscale:
            gray = (x * self.gray).sum(1, keepdim=True).expand_as(x)
            x = torch.where(rand[:, 4] < aug.grayscale, gray, x)
        return x

    def _rotate_hue(self, x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Rotate the chroma (I, Q) plane of YIQ by a per-sample angle; luma is unchanged."""
        cos, sin = torch.cos(angle), torch.sin(angle)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rotate = torch.stack(
            [torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1), torch.stack([zero, sin, cos], 1)], 1
        )
        matrix = self.from_yiq @ rotate @ self.to_yiq  # (n, 3, 3)
        return torch.einsum("nij,njhw->nihw", matrix, x).clamp_(0.0, 1.0)
