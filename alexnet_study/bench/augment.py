"""Augmentation throughput: ``python -m alexnet_study.bench.augment [--device cuda] [--batch 256]``.

Times every ``aug=`` preset of :class:`DeviceTransform` (uint8 at the stored size in, normalized
float at the model's input size out) and, when kornia is installed (``uv run --with kornia``),
kornia's per-sample equivalents on the same batches (after a plain resize, which kornia's
pipeline needs first). Prints images/s and writes them as JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from alexnet_study.config import presets
from alexnet_study.data.transforms import Augment, DeviceTransform

PRESETS = ("none", "flip_crop", "geometric", "geometric_color", "geometric_gray_color")
PHOTO_EVAL_CROP = 0.875  # data.eval_crop of the photo datasets: Resize(256) + CenterCrop(224) at 224


def preset(name: str) -> Augment:
    """The ``conf/aug/NAME.yaml`` preset as an :class:`Augment` (defaults lists followed)."""
    fields = {k: v for k, v in presets.preset("aug", name).items() if not k.startswith("_")}
    return Augment(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _timed(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats


def _kornia_pipeline(aug: Augment) -> torch.nn.Module | None:
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    ops: list[torch.nn.Module] = []
    if aug.hflip:
        ops.append(K.RandomHorizontalFlip(p=aug.hflip))
    if aug.vflip:
        ops.append(K.RandomVerticalFlip(p=aug.vflip))
    if aug.rotation:
        ops.append(K.RandomRotation(degrees=aug.rotation, p=1.0))
    if aug.perspective:
        ops.append(K.RandomPerspective(distortion_scale=aug.perspective, p=aug.perspective_p))
    if aug.brightness or aug.contrast or aug.saturation or aug.hue:
        ops.append(K.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue, p=1.0))
    if aug.grayscale:
        ops.append(K.RandomGrayscale(p=aug.grayscale))
    return K.AugmentationSequential(*ops) if ops else None


def measure(
    device: str = "cpu", batch: int = 128, stored: int = 256, output: int = 224, repeats: int = 5, kornia: bool = True
) -> list[dict[str, object]]:
    """images/s of each preset for this package's transform (and kornia's, when installed)."""
    dev = torch.device(device)
    images = torch.randint(0, 256, (batch, 3, stored, stored), dtype=torch.uint8, device=dev)
    rows: list[dict[str, object]] = []
    for name in PRESETS:
        aug = preset(name)
        transform = DeviceTransform(output, eval_crop=PHOTO_EVAL_CROP, augment=aug).to(dev)
        seconds = _timed(lambda t=transform: t(images, train=True), dev, repeats)
        row: dict[str, object] = {"preset": name, "device": str(dev), "batch": batch, "images_per_s": batch / seconds}
        pipeline = _kornia_pipeline(aug) if kornia else None
        if pipeline is not None:
            pipeline = pipeline.to(dev)

            def kornia_step(p: torch.nn.Module = pipeline) -> torch.Tensor:
                x = F.interpolate(images.float() / 255.0, size=(output, output), mode="bilinear", antialias=True)
                return p(x)

            row["kornia_images_per_s"] = batch / _timed(kornia_step, dev, repeats)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--stored", type=int, default=256)
    parser.add_argument("--output", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-kornia", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = measure(args.device, args.batch, args.stored, args.output, args.repeats, kornia=not args.no_kornia)
    print(
        f"{'preset':<22}{'images/s':>12}{'kornia images/s':>18}   ({args.device}, batch {args.batch}, {args.stored}->{args.output})"
    )
    for row in rows:
        theirs = row.get("kornia_images_per_s")
        print(f"{row['preset']:<22}{row['images_per_s']:>12,.0f}{'' if theirs is None else f'{theirs:,.0f}':>18}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
