"""Batched resize, augmentation and normalization on the training device.

Images arrive as uint8 NCHW batches at their stored size (32x32 for CIFAR, 256x256 for photos).
Training draws one crop, scale and flip per sample and applies all of them, plus the resize to
the model's input size, in a single ``grid_sample``; evaluation is a centre crop and a resize.
Random numbers come from ``torch.rand`` on the batch's device: no host round trip, no PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from alexnet_study.errors import ConfigError

NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@dataclass(frozen=True)
class Augment:
    """Per-sample training augmentation (the ``aug=`` config group).

    ``max_shift``: random translation of the crop, as a fraction of the stored side, with zero
    padding outside the image (0.125 on 32x32 is CIFAR's classic pad-4-and-crop).
    ``scale``: area range of a random-resized crop (``None`` keeps the evaluation crop's size).
    ``ratio``: aspect-ratio range of that crop. ``hflip``: probability of a horizontal flip.
    """

    hflip: float = 0.0
    max_shift: float = 0.0
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"aug.hflip={self.hflip}: must be a probability in [0, 1]")
        if not 0.0 <= self.max_shift <= 1.0:
            raise ConfigError(f"aug.max_shift={self.max_shift}: must be a fraction of the image side in [0, 1]")
        if self.scale is not None and not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ConfigError(f"aug.scale={list(self.scale)}: must be [min, max] with 0 < min <= max <= 1")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"aug.ratio={list(self.ratio)}: must be [min, max] with 0 < min <= max")

    @property
    def is_identity(self) -> bool:
        return self.hflip == 0.0 and self.max_shift == 0.0 and self.scale is None


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for a ``data.normalize`` name."""
    if name not in NORMALIZATIONS:
        raise ConfigError(f"data.normalize={name!r}: unknown; accepted: {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[name]


class DeviceTransform(nn.Module):
    """uint8 NCHW batch at the stored size -> normalized float NCHW batch at ``output_size``.

    ``eval_crop`` is the fraction of the stored side kept by the evaluation centre crop
    (1.0 for CIFAR; 224/256 gives Resize(256) + CenterCrop(224) on 256x256 stored photos).
    Training crops have that size too unless ``augment.scale`` asks for random-resized crops.
    """

    def __init__(
        self,
        output_size: int,
        normalize: str = "imagenet",
        eval_crop: float = 1.0,
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        if output_size < 1:
            raise ConfigError(f"image size {output_size}: must be >= 1")
        if not 0.0 < eval_crop <= 1.0:
            raise ConfigError(f"data.eval_crop={eval_crop}: must be a fraction in (0, 1]")
        mean, std = normalization(normalize)
        self.output_size = output_size
        self.eval_crop = eval_crop
        self.augment = augment or Augment()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"expected a uint8 NCHW batch, got {images.dtype} with shape {tuple(images.shape)}")
        x = self._augment(images) if train and not self.augment.is_identity else self._center(images)
        # x is a fresh float tensor in both paths, so normalizing in place is safe (and exact:
        # 0 and 255 map to (0 - mean) / std and (1 - mean) / std).
        return x.div_(255.0).sub_(self.mean).div_(self.std)

    def _center(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        crop_h, crop_w = round(height * self.eval_crop), round(width * self.eval_crop)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        x = images[..., top : top + crop_h, left : left + crop_w].float()
        if (crop_h, crop_w) != (self.output_size, self.output_size):
            downscale = crop_h > self.output_size or crop_w > self.output_size
            x = F.interpolate(
                x, size=(self.output_size, self.output_size), mode="bilinear", align_corners=False, antialias=downscale
            )
        return x

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        n, device, aug = images.shape[0], images.device, self.augment
        rand = torch.rand(n, 5, device=device)
        if aug.scale is not None:
            area = aug.scale[0] + (aug.scale[1] - aug.scale[0]) * rand[:, 0]
            log_lo, log_hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
            ratio = torch.exp(log_lo + (log_hi - log_lo) * rand[:, 1])
            # Half-widths in normalized [-1, 1] coordinates; a side cannot exceed the image.
            half_w = torch.sqrt(area * ratio).clamp(max=1.0)
            half_h = torch.sqrt(area / ratio).clamp(max=1.0)
        else:
            half_w = half_h = torch.full((n,), self.eval_crop, device=device)
        shift = 2.0 * aug.max_shift
        center_x = (2.0 * rand[:, 2] - 1.0) * (1.0 - half_w + shift)
        center_y = (2.0 * rand[:, 3] - 1.0) * (1.0 - half_h + shift)
        flip = torch.where(rand[:, 4] < aug.hflip, -1.0, 1.0)
        zero = torch.zeros_like(half_w)
        theta = torch.stack(
            [torch.stack([half_w * flip, zero, center_x], 1), torch.stack([zero, half_h, center_y], 1)], 1
        )
        grid = F.affine_grid(theta, [n, images.shape[1], self.output_size, self.output_size], align_corners=False)
        # Inside the image, clamp to the border as F.interpolate does (no dark frame when
        # upsampling); beyond its edges, a shifted crop sees zero padding, as in pad-and-crop.
        x = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        outside = (grid.abs() > 1.0).any(dim=-1, keepdim=True).permute(0, 3, 1, 2)
        return x.masked_fill_(outside, 0.0)
