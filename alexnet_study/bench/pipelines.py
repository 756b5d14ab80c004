"""The four pipelines a benchmark compares (``package``, ``standard``, ``naive``, ``model_only``) and the
model, optimizer and training step they share."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet_study.bench.device import autocast_dtype
from alexnet_study.config.presets import preset
from alexnet_study.data.base import DeviceBatchLoader, EpochSampler, Split
from alexnet_study.data.transforms import NORMALIZATIONS, Augment, DeviceTransform
from alexnet_study.errors import ConfigError
from alexnet_study.models import build_alexnet, count_parameters

PIPELINES = ("package", "standard", "naive", "model_only")
STORED_SIZE = 32  # CIFAR-10's side
NUM_CLASSES = 10
NORMALIZE = "imagenet"
CIFAR_PAD = 0.125  # pad 4 of 32 before the random crop (conf/data/cifar10.yaml's crop_pad)


# -- configs: read without Hydra or OmegaConf (alexnet_study.config.presets) --------------------------
def model_config(name: str, input_size: int | None = None, in_channels: int = 3) -> dict[str, Any]:
    """The keyword arguments of :func:`build_alexnet` for a ``conf/model`` preset, 10 classes."""
    config = {k: v for k, v in preset("model", name).items() if not k.startswith("_")}
    config.update(num_classes=NUM_CLASSES, in_channels=in_channels)
    if "input_normalization" in config:  # ${data.normalize} in the presets; the bench normalizes as ImageNet
        config["input_normalization"] = "imagenet"
    if input_size is not None:
        config["input_size"] = input_size
    interpolated = [k for k, v in config.items() if isinstance(v, str) and "${" in v]
    if interpolated:
        raise ConfigError(f"model={name}: {interpolated} use interpolations, which this reader does not resolve")
    return config


def sgd_config() -> dict[str, Any]:
    """``conf/optim/sgd.yaml``'s arguments (the default optimizer); ``fused`` is each pipeline's own."""
    return {k: v for k, v in preset("optim", "sgd").items() if not k.startswith("_") and k != "fused"}


# -- the model, its FLOPs and one training step -------------------------------------------------
def build_model(name: str, input_size: int | None = None, in_channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_alexnet(**model_config(name, input_size, in_channels))


def model_stats(name: str, input_size: int) -> tuple[int, int]:
    """(parameters, FLOPs of one image's forward pass) with 10 classes; multiply-adds count 2.
    Counted by ``torch.utils.flop_counter`` on the meta device (no memory, no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_alexnet(**model_config(name, input_size))
        images = torch.empty(1, 3, input_size, input_size)
    with FlopCounterMode(display=False) as counter:
        model(images)
    return count_parameters(model)[0], int(counter.get_total_flops())


def make_optimizer(model: nn.Module, fused: bool) -> tuple[torch.optim.Optimizer, bool]:
    """``conf/optim/sgd.yaml``'s SGD, fused when asked and this build supports it; (optimizer, fused)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if fused:
        try:
            return torch.optim.SGD(params, **sgd_config(), fused=True), True
        except (RuntimeError, ValueError, TypeError):
            pass
    return torch.optim.SGD(params, **sgd_config()), False


@dataclass
class Step:
    """One training step: forward (under autocast), loss, backward, optimizer step."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    dtype: torch.dtype | None
    channels_last: bool
    loss_fn: nn.Module

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()
        with autocast:
            loss = self.loss_fn(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def make_step(
    model: nn.Module,
    device: torch.device,
    dtype: torch.dtype | None,
    channels_last: bool,
    fused: bool,
    compile: bool = False,
) -> tuple[Step, dict[str, Any]]:
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, is_fused = make_optimizer(model, fused)
    if compile:
        model = torch.compile(model)
    settings = {
        "precision": "bf16-mixed" if dtype == torch.bfloat16 else "fp32",
        "channels_last": channels_last,
        "fused_optimizer": is_fused,
        "compiled": compile,
    }
    return Step(model, optimizer, device, dtype, channels_last, nn.CrossEntropyLoss()), settings


# -- data ---------------------------------------------------------------------------------------
def cifar_like(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random CIFAR-10-shaped data: uint8 images (N, 32, 32, 3) as torchvision's CIFAR10 holds them, labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(size, STORED_SIZE, STORED_SIZE, 3), dtype=np.uint8)
    labels = rng.permutation(np.arange(size) % NUM_CLASSES).astype(np.int64)
    return images, labels


class PILImages(torch.utils.data.Dataset):
    """A torchvision-style dataset: ``(PIL image, int label)`` per index, as ``datasets.CIFAR10``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable[[Any], Any] | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def standard_transform(image_size: int) -> Callable[[Any], torch.Tensor]:
    from torchvision import transforms

    mean, std = NORMALIZATIONS[NORMALIZE]
    return transforms.Compose(
        [
            transforms.Resize(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def _cycle(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


# -- pipelines ----------------------------------------------------------------------------------
@dataclass
class Run:
    """A pipeline ready to train: ``steps(n)`` runs n steps and returns the last loss (on the device)."""

    steps: Callable[[int], torch.Tensor]
    settings: dict[str, Any]
    close: Callable[[], None] = lambda: None
    # extra warm-up steps on top of --warmup (a DataLoader's prefetched batches)
    extra_warmup: int = 0


def package_run(
    model_name: str,
    device: torch.device,
    batch_size: int,
    image_size: int,
    data: tuple[np.ndarray, np.ndarray],
    compile: bool = False,
    pad_channels: bool = False,
    seed: int = 0,
) -> Run:
    """This package's pipeline, as ``ImageClassifier`` + ``DeviceDataModule`` run it, in a plain loop."""
    images, labels = data
    split = Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)).to(device)
    sampler = EpochSampler(len(split), shuffle=True, seed=seed)
    loader = DeviceBatchLoader(split, batch_size, sampler, drop_last=True)
    if len(loader) < 1:
        raise ConfigError(f"--batch-size {batch_size}: larger than --dataset-size {len(split)}")
    transform = DeviceTransform(
        image_size, normalize=NORMALIZE, augment=Augment(hflip=0.5, random_crop=True), default_pad=CIFAR_PAD
    ).to(device)
    in_channels = 4 if pad_channels else 3
    model = build_model(model_name, image_size, in_channels, seed)
    step, settings = make_step(
        model, device, autocast_dtype(device), device.type == "cuda", fused=True, compile=compile
    )

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    source = batches()

    def steps(n: int) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for _ in range(n):
            uint8_batch, target = next(source)
            x = transform(uint8_batch, train=True)
            if pad_channels:
                x = torch.cat([x, x.new_zeros(x.shape[0], 1, *x.shape[2:])], 1)
            loss = step(x, target)
        return loss

    settings.update(
        data="uint8 resident on the device, index-slice batches",
        transform="DeviceTransform on the device: flip + crop (pad 0.125) + resize + normalize",
        in_channels=in_channels,
        resident_dataset_mib=split.images.numel() / 2**20,
    )
    return Run(steps, settings)


def model_only_run(
    model_name: str, device: torch.device, batch_size: int, image_size: int, compile: bool = False, seed: int = 0
) -> Run:
    """``package``'s training step on one batch already at the input size: the ceiling of any pipeline."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=generator).to(device)
    model = build_model(model_name, image_size, 3, seed)
    step, settings = make_step(
        model, device, autocast_dtype(device), device.type == "cuda", fused=True, compile=compile
    )

    def steps(n: int) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for _ in range(n):
            loss = step(images, labels)
        return loss

    settings.update(data="one float batch at the input size, already on the device")
    return Run(steps, settings)


def loader_run(
    model_name: str,
    device: torch.device,
    batch_size: int,
    image_size: int,
    data: tuple[np.ndarray, np.ndarray],
    workers: int,
    mixed: bool,
    seed: int = 0,
) -> Run:
    """The torchvision recipe: PIL dataset + transforms in a DataLoader, batches copied to the device."""
    images, labels = data
    dataset = PILImages(images, labels, standard_transform(image_size))
    if len(dataset) < batch_size:
        raise ConfigError(f"--batch-size {batch_size}: larger than --dataset-size {len(dataset)}")
    pin = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    model = build_model(model_name, image_size, 3, seed)
    step, settings = make_step(
        model, device, autocast_dtype(device) if mixed else None, channels_last=False, fused=False
    )
    source = _cycle(loader)

    def steps(n: int) -> torch.Tensor:
        loss = torch.zeros((), device=device)
        for _ in range(n):
            x, target = next(source)
            loss = step(x.to(device, non_blocking=pin), target.to(device, non_blocking=pin))
        return loss

    def close() -> None:
        iterator = getattr(loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()

    settings.update(
        data="PIL images (torchvision-style Dataset) in a DataLoader",
        transform="Resize + RandomHorizontalFlip + ToTensor + Normalize per image in the workers",
        num_workers=workers,
        pin_memory=pin,
    )
    # Batches the workers prepare ahead (prefetch_factor 2 each) are not steady-state work.
    return Run(steps, settings, close, extra_warmup=2 * workers)


# -- timing -------------------------------------------------------------------------------------
