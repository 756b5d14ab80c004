"""Training throughput: ``python -m alexnet_study.bench [--device cuda] [--json PATH]``.

Measures steady-state training throughput (images/s through forward, backward and optimizer
step; warm-up excluded; the device synchronized around each timed window) of the ``alexnet``
preset on CIFAR-10-shaped data (random 32x32 uint8 images, 10 classes) resized to the model's
input (227), on one device, for:

``package``
    this package's pipeline: the dataset resident on the device as uint8 (``Split``,
    ``EpochSampler``, ``DeviceBatchLoader``), resize + flip/crop (CIFAR's pad 4 of 32) +
    normalize batched on the device (``DeviceTransform``), bf16 autocast on CUDA, channels_last,
    a fused SGD, ``torch.compile`` with ``--compile``;
``standard``
    what a competent user writes: a torchvision-style dataset of PIL images (as
    ``torchvision.datasets.CIFAR10`` returns them) with ``Resize``, ``RandomHorizontalFlip``,
    ``ToTensor``, ``Normalize`` in a ``DataLoader`` (``num_workers`` = CPU count, ``pin_memory``,
    persistent workers), the same model and precision;
``naive``
    the same as ``standard`` in fp32 with ``num_workers=2``;
``model_only``
    the reference ceiling: ``package``'s training step on a batch already on the device at the
    input size (no data pipeline at all).

It prints a table (images/s, how many times faster ``package`` is, achieved TFLOP/s from the
model's counted FLOPs, model FLOP utilization against ``--peak-tflops`` or the known dense bf16
peak of the detected GPU, peak GPU memory, host syncs per step) and writes it as JSON with
``--json PATH``. Options add other presets (``--models``), batch size vs throughput
(``--batch-sizes``), input padded to 4 channels (``--pad-channels``), a torch profile of
``package`` (``--profile``), the package's real Lightning training loop (``--trainer``) and a
4-job sweep run one after another vs concurrently (``--sweep``). ``--quick`` runs everything at
tiny sizes (a check that it works, on the CPU too; its numbers mean nothing).

The plain loops need neither Hydra nor OmegaConf (model presets are read from ``conf/model/*.yaml``
with PyYAML); ``--trainer`` and ``--sweep`` run the package's Hydra entry point and need them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from alexnet_study.data.base import DeviceBatchLoader, EpochSampler, Split
from alexnet_study.data.transforms import NORMALIZATIONS, Augment, DeviceTransform
from alexnet_study.errors import ConfigError, first_line
from alexnet_study.models import build_alexnet, count_parameters
from alexnet_study.presets import preset
from alexnet_study.provenance import write_atomically

PACKAGE_DIR = Path(__file__).resolve().parent
PIPELINES = ("package", "standard", "naive", "model_only")
STORED_SIZE = 32  # CIFAR-10's side
NUM_CLASSES = 10
NORMALIZE = "imagenet"
CIFAR_PAD = 0.125  # pad 4 of 32 before the random crop (conf/data/cifar10.yaml's crop_pad)
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, by a substring of
# torch.cuda.get_device_name(); the first match wins, so specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
SYNC_WARNING = "synchroniz"  # torch.cuda.set_sync_debug_mode's warning: "called a synchronizing CUDA operation"


# -- configs: read without Hydra or OmegaConf (alexnet_study.presets) --------------------------
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
    """``conf/optim/sgd.yaml``'s arguments (the default optimizer)."""
    return {k: v for k, v in preset("optim", "sgd").items() if not k.startswith("_")}


# -- device helpers ---------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for MFU: ``--peak-tflops``, else the GPU's known dense bf16 peak."""
    if given is not None:
        return given, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = known_peak(name)
        if known is None:
            return None, f"unknown GPU {name!r}: pass --peak-tflops"
        return known[1], f"dense bf16 peak of {known[0]} (matched {name!r})"
    return None, "no known peak for this device: pass --peak-tflops"


def known_peak(device_name: str) -> tuple[str, float] | None:
    """(matched key, dense bf16 TFLOP/s) for a ``torch.cuda.get_device_name``, or None."""
    return next(((key, value) for key, value in PEAK_BF16_TFLOPS if key in device_name), None)


def _precision(device: torch.device) -> torch.dtype | None:
    """The package's ``auto_precision``: bf16 autocast on CUDA GPUs that have it, else fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


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
    step, settings = make_step(model, device, _precision(device), device.type == "cuda", fused=True, compile=compile)

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
    step, settings = make_step(model, device, _precision(device), device.type == "cuda", fused=True, compile=compile)

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
    step, settings = make_step(model, device, _precision(device) if mixed else None, channels_last=False, fused=False)
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
def time_windows(run: Run, device: torch.device, warmup: int, steps: int, repeats: int) -> tuple[list[float], float]:
    """Seconds of each of ``repeats`` windows of ``steps`` steps after ``warmup`` untimed steps;
    the device is synchronized before and after each window, never inside it. Also returns the
    last loss (one sync, after the timing)."""
    run.steps(warmup)
    _sync(device)
    seconds = []
    loss = torch.zeros(())
    for _ in range(repeats):
        start = time.perf_counter()
        loss = run.steps(steps)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds, float(loss)


class _SyncLog:
    """Records the implicit host-device synchronizations that ``torch.cuda.set_sync_debug_mode`` reports."""

    def __init__(self) -> None:
        self._catcher: warnings.catch_warnings | None = None
        self._caught: list[warnings.WarningMessage] = []
        self.syncs = 0
        self.sites: Counter[str] = Counter()

    def start(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self._caught = self._catcher.__enter__()
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        torch.cuda.set_sync_debug_mode("default")
        if self._catcher is not None:
            self._catcher.__exit__(None, None, None)
            self._catcher = None
        for warning in self._caught:
            if SYNC_WARNING in str(warning.message):
                self.syncs += 1
                self.sites[f"{warning.filename}:{warning.lineno}"] += 1
        self._caught = []


def count_syncs(run: Run, device: torch.device, steps: int = 5) -> tuple[float | None, list[str]]:
    """(host syncs per step, where they happen) over ``steps`` more steps; None off CUDA."""
    if device.type != "cuda":
        return None, []
    _sync(device)
    log = _SyncLog()
    log.start()
    try:
        run.steps(steps)
    finally:
        log.stop()
    _sync(device)
    return log.syncs / steps, sorted(log.sites)


def profile_run(run: Run, device: torch.device, path: Path, title: str, steps: int = 5) -> None:
    """Append a torch.profiler table of ``steps`` steps (ops sorted by device time) to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    _sync(device)
    with profile(activities=activities) as prof:
        run.steps(steps)
        _sync(device)
    # "cuda" keys are read as "device" ones by recent torch (self_device_time_total)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(f"== {title}: {steps} steps\n{table}\n\n")


@dataclass
class Settings:
    device: torch.device
    batch_size: int
    steps: int
    warmup: int
    repeats: int
    dataset_size: int
    workers: int
    naive_workers: int
    compile: bool
    peak: float | None
    seed: int = 0
    quick: bool = False  # no DataLoader prefetch warm-up: a check that it runs, not a measurement


def measure(
    pipeline: str,
    model_name: str,
    image_size: int,
    train_flops: float,
    s: Settings,
    batch_size: int | None = None,
    *,
    data: tuple[np.ndarray, np.ndarray],
    pad_channels: bool = False,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One row: build the pipeline, warm up, time it, count its host syncs, free it."""
    device, batch = s.device, batch_size or s.batch_size
    _reset_memory(device)
    if pipeline == "package":
        run = package_run(model_name, device, batch, image_size, data, s.compile, pad_channels, s.seed)
    elif pipeline == "model_only":
        run = model_only_run(model_name, device, batch, image_size, s.compile, s.seed)
    elif pipeline in ("standard", "naive"):
        workers = s.workers if pipeline == "standard" else s.naive_workers
        run = loader_run(
            model_name, device, batch, image_size, data, workers, mixed=pipeline == "standard", seed=s.seed
        )
    else:
        raise ConfigError(f"pipeline {pipeline!r}: unknown; accepted: {', '.join(PIPELINES)}")
    try:
        warmup = s.warmup + (0 if s.quick else run.extra_warmup)
        seconds, loss = time_windows(run, device, warmup, s.steps, s.repeats)
        syncs, sync_sites = count_syncs(run, device)
        if profile is not None:
            profile_run(run, device, profile, f"{model_name} {pipeline} batch {batch} at {image_size} on {device}")
    finally:
        run.close()
    rates = sorted(batch * s.steps / t for t in seconds)
    images_per_s = rates[len(rates) // 2]
    tflops = images_per_s * train_flops / 1e12
    row: dict[str, Any] = {
        "model": model_name,
        "pipeline": pipeline + ("_pad4" if pad_channels else ""),
        "batch_size": batch,
        "image_size": image_size,
        "images_per_s": images_per_s,
        "window_images_per_s": [batch * s.steps / t for t in seconds],
        "step_ms": 1000 * batch / images_per_s,
        "tflops": tflops,
        "mfu": tflops / s.peak if s.peak else None,
        "peak_memory_mib": _peak_memory_mib(device),
        "host_syncs_per_step": syncs,
        "host_sync_sites": sync_sites,
        "final_loss": loss,
        **run.settings,
    }
    del run
    _reset_memory(device)
    return row


# -- the package's Lightning loop and a sweep (both need Hydra) -----------------------------------
class SyncCounter(L.Callback):
    """Counts implicit host-device syncs in the training steps after the first epoch (CUDA only).

    Each epoch's window runs from the start of its second training batch to the start of its last
    one (``EpochRecorder`` synchronizes on purpose at an epoch's first and last batch), so it
    covers whole steps: data, forward, backward, optimizer, callbacks, logging. The totals of the
    last fit are left in ``SyncCounter.last``.
    """

    last: ClassVar[dict[str, Any] | None] = None

    def __init__(self) -> None:
        self._log: _SyncLog | None = None
        self._steps = 0
        self._total = _SyncLog()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if pl_module.device.type != "cuda" or trainer.current_epoch < 1:
            return
        last = trainer.num_training_batches - 1
        if batch_idx == 1 and last > 1:
            self._log = _SyncLog()
            self._log.start()
        elif batch_idx == last and self._log is not None:
            self._log.stop()
            self._total.syncs += self._log.syncs
            self._total.sites.update(self._log.sites)
            self._steps += last - 1
            self._log = None
            SyncCounter.last = {
                "steps": self._steps,
                "syncs": self._total.syncs,
                "syncs_per_step": self._total.syncs / self._steps,
                "sites": dict(self._total.sites.most_common()),
            }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._log is not None:  # an epoch cut short
            self._log.stop()
            self._log = None


def lightning_run(
    model_name: str, image_size: int, train_flops: float, s: Settings, epochs: int, output_root: Path
) -> dict[str, Any]:
    """The package's own training loop (``train.run``: Lightning, callbacks, loggers) on synthetic
    data of ``--dataset-size`` images: the images/s its ``EpochRecorder`` reports after the first epoch."""
    try:
        from alexnet_study.config import compose
        from alexnet_study.train import run
    except ImportError as err:
        raise SystemExit(f"--trainer needs hydra-core and omegaconf ({err}); see README, Performance") from None
    batch = s.batch_size
    overrides = [
        f"paths.root_dir={output_root}",
        "data=synthetic",
        f"model={model_name}",
        f"model.input_size={image_size}",
        f"data.train_size={s.dataset_size}",
        f"data.val_size={max(batch, s.dataset_size // 10)}",
        "data.test_size=0",
        f"data.batch_size={batch}",
        "test=false",
        f"epochs={epochs}",
        f"compile={str(s.compile).lower()}",
        f"seed={s.seed}",
    ]
    if s.device.type == "cpu":
        overrides.append("trainer=cpu")
    elif s.device.type == "cuda":
        overrides.append("+callbacks.sync_counter._target_=alexnet_study.bench.SyncCounter")
    counter = importlib.import_module("alexnet_study.bench").SyncCounter
    counter.last = None
    _reset_memory(s.device)
    cfg = compose(overrides, output_dir=output_root / f"{model_name}_{batch}")
    metrics = run(cfg)
    syncs = counter.last or {}
    images_per_s = metrics.get("images_per_s_after_first_epoch") or 0.0
    tflops = images_per_s * train_flops / 1e12
    return {
        "model": model_name,
        "pipeline": "lightning",
        "batch_size": batch,
        "image_size": image_size,
        "images_per_s": images_per_s,
        "images_per_s_all_epochs": metrics.get("images_per_s"),
        "epochs": metrics.get("epochs_run"),
        "status": metrics.get("status"),
        "precision": metrics.get("precision"),
        "tflops": tflops,
        "mfu": tflops / s.peak if s.peak else None,
        "peak_memory_mib": _peak_memory_mib(s.device),
        "host_syncs_per_step": syncs.get("syncs_per_step"),
        "host_sync_sites": sorted(syncs.get("sites", {})),
        "data": "train.run(cfg): data=synthetic (uint8 on the device), the default trainer, callbacks and logger",
        "compiled": s.compile,
        "command": "python -m alexnet_study " + " ".join(o for o in overrides if not o.startswith("+callbacks")),
    }


SWEEP_OVERRIDES = ("data=synthetic", "data.train_size=50000", "data.val_size=5000", "data.test_size=1000", "epochs=3")


def sweep_commands(experiment: str, overrides: Sequence[str]) -> dict[str, list[str]]:
    """The two ways to run a study's sweep: jobs one after another (Hydra's basic launcher) and
    side by side on one GPU (``hydra/launcher=parallel``: joblib, 4 processes)."""
    sequential = [sys.executable, "-m", "alexnet_study", f"+experiment={experiment}", *overrides, "-m"]
    return {"sequential": sequential, "parallel": [*sequential[:-1], "hydra/launcher=parallel", "-m"]}


def time_sweep(experiment: str, overrides: Sequence[str], root: Path) -> dict[str, Any]:
    """Wall time of the sweep run each way (each in its own ``paths.root_dir`` under ``root``)."""
    result: dict[str, Any] = {"experiment": experiment, "overrides": list(overrides)}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")])),
    }
    for mode, command in sweep_commands(experiment, overrides).items():
        mode_root = root / mode
        mode_root.mkdir(parents=True, exist_ok=True)
        command = [*command[:-1], f"paths.root_dir={mode_root}", "-m"]
        print(f"sweep ({mode}): {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        with (mode_root / "sweep.log").open("w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        seconds = time.perf_counter() - start
        jobs = [json.loads(p.read_text()) for p in sorted(mode_root.glob("outputs/*/multiruns/*/*/metrics.json"))]
        result[mode] = {
            "seconds": seconds,
            "returncode": done.returncode,
            "jobs": len(jobs),
            "statuses": [job.get("status") for job in jobs],
            "job_images_per_s": [job.get("images_per_s_after_first_epoch") for job in jobs],
            "command": "python " + " ".join(command[1:]),
            "log": str(mode_root / "sweep.log"),
        }
    if result["sequential"]["seconds"] and result["parallel"]["seconds"]:
        result["speedup"] = result["sequential"]["seconds"] / result["parallel"]["seconds"]
    return result


# -- the command line ---------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip() and v.strip() != "none"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m alexnet_study.bench",
        description="Steady-state training images/s of this package's pipeline vs the standard torchvision "
        "DataLoader recipe and a naive fp32 script, for AlexNet presets on CIFAR-10-shaped data "
        "(random 32x32 images, resized to the model's input). See the module's docstring and the README.",
    )
    add = parser.add_argument
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda (when present) or cpu")
    add("--models", default="alexnet", help="comma list of conf/model presets (default: alexnet)")
    add("--pipelines", default=",".join(PIPELINES), help="comma list, or none (default: %(default)s)")
    add("--batch-size", type=int, default=256, help="(default: %(default)s)")
    add("--batch-sizes", default="", help="also time 'package' at each of these, e.g. 128,256,512,1024")
    add("--image-size", type=int, default=None, help="input side (default: each preset's input_size: 227 for alexnet)")
    add("--steps", type=int, default=50, help="steps per timed window (default: %(default)s)")
    add(
        "--warmup",
        type=int,
        default=20,
        help="untimed steps first; DataLoaders add 2 per worker (default: %(default)s)",
    )
    add("--repeats", type=int, default=3, help="timed windows; images/s is their median (default: %(default)s)")
    add("--dataset-size", type=int, default=50_000, help="images, as CIFAR-10's training set (default: %(default)s)")
    add(
        "--workers", type=int, default=os.cpu_count() or 1, help="DataLoader workers of 'standard' (default: CPU count)"
    )
    add("--naive-workers", type=int, default=2, help="DataLoader workers of 'naive' (default: %(default)s)")
    add("--compile", action="store_true", help="torch.compile the model of 'package' and 'model_only'")
    add("--pad-channels", action="store_true", help="also time 'package' with the input padded to 4 channels")
    add("--peak-tflops", type=float, default=None, help="peak for MFU (default: the detected GPU's dense bf16 peak)")
    add("--profile", type=Path, default=None, help="write torch.profiler tables of 'package' to this file")
    add("--trainer", action="store_true", help="also time the package's own Lightning loop (train.run; needs Hydra)")
    add(
        "--trainer-epochs",
        type=int,
        default=3,
        help="epochs of --trainer; the first is not counted (default: %(default)s)",
    )
    add("--sweep", action="store_true", help="time a 4-job sweep run one after another vs concurrently (needs Hydra)")
    add("--sweep-experiment", default="activation_sweep", help="its conf/experiment (default: %(default)s)")
    add(
        "--sweep-overrides",
        default=" ".join(SWEEP_OVERRIDES),
        help="overrides of each sweep job (default: %(default)s)",
    )
    add("--work-dir", type=Path, default=None, help="where --trainer and --sweep write (default: a new temporary dir)")
    add("--seed", type=int, default=0)
    add("--json", type=Path, default=None, help="write the results here")
    add("--quick", action="store_true", help="tiny sizes (image 64, batch 8, 3 steps, 64 images): checks that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size = args.image_size or 64
        args.batch_size, args.steps, args.warmup, args.repeats, args.dataset_size = 8, 3, 1, 1, 64
        args.trainer_epochs = 2
        args.sweep_overrides += " trainer=smoke data.train_size=64 data.val_size=16 data.test_size=16 data.batch_size=8"
        args.sweep_overrides += f" model.input_size={args.image_size}"
    for key in ("batch_size", "steps", "repeats", "dataset_size", "trainer_epochs"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    if not rows:
        return
    print(f"\n{title}")
    header = f"{'model':<14}{'pipeline':<14}{'batch':>6}{'size':>6}{'images/s':>12}{'package is':>12}{'TFLOP/s':>10}{'MFU':>8}{'peak MiB':>10}{'syncs/step':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(
                f"{row['model']:<14}{row['pipeline']:<14}{row['batch_size']:>6}{row['image_size']:>6}  failed: {row['error']}"
            )
            continue
        print(
            f"{row['model']:<14}{row['pipeline']:<14}{row['batch_size']:>6}{row['image_size']:>6}"
            f"{row['images_per_s']:>12,.0f}{_fmt(row.get('package_speedup'), '>11.2f', 'x'):>12}"
            f"{_fmt(row.get('tflops'), '>10.2f'):>10}{_fmt(None if row.get('mfu') is None else 100 * row['mfu'], '>7.1f', '%'):>8}"
            f"{_fmt(row.get('peak_memory_mib'), '>10,.0f'):>10}{_fmt(row.get('host_syncs_per_step'), '>12.2f'):>12}"
        )


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    """``package_speedup``: images/s of ``package`` (same model and batch size) over this row's."""
    for row in rows:
        base = next(
            (
                r
                for r in rows
                if r["pipeline"] == "package" and (r["model"], r["batch_size"]) == (row["model"], row["batch_size"])
            ),
            None,
        )
        if base is not None and row["images_per_s"] > 0 and base["images_per_s"] > 0:
            row["package_speedup"] = base["images_per_s"] / row["images_per_s"]
            row["ratio_to_package"] = row["images_per_s"] / base["images_per_s"]


def _bench_model(
    name: str, args: argparse.Namespace, settings: Settings, report: dict[str, Any], work_dir: Path | None
) -> None:
    """Every measurement of one preset, appended to ``report`` (and saved to ``--json`` as it goes)."""
    image_size = args.image_size or int(model_config(name)["input_size"])
    params, flops = model_stats(name, image_size)
    train_flops = 3 * flops
    report["models"][name] = {
        "image_size": image_size,
        "parameters": params,
        "forward_gflops_per_image": flops / 1e9,
        "train_gflops_per_image": train_flops / 1e9,
        "float32_dataset_copy_at_input_mib": args.dataset_size * 3 * image_size**2 * 4 / 2**20,
    }
    print(f"model {name!r} at {image_size}: {params:,} parameters, {flops / 1e9:.3f} GFLOP forward per image "
          f"({train_flops / 1e9:.3f} training)")  # fmt: skip
    data = cifar_like(args.dataset_size, args.seed)

    def record(
        section: str, pipeline: str, batch: int, fn: Callable[..., dict[str, Any]], *fargs: Any, **fkw: Any
    ) -> None:
        """Append fn()'s row; a failure (out of memory, a compile error) becomes a row saying so."""
        print(f"  {pipeline} at batch {batch} ...", flush=True)
        try:
            report[section].append(fn(*fargs, **fkw))
        except Exception as err:  # one failing configuration must not lose the others
            message = f"{type(err).__name__}: {first_line(err, empty='')}"
            print(f"  {pipeline} failed: {message}", flush=True)
            row = {"model": name, "pipeline": pipeline, "batch_size": batch, "image_size": image_size}
            report[section].append({**row, "images_per_s": 0.0, "error": message})
            _reset_memory(settings.device)
        if args.json:  # as it goes: a run stopped at a time limit keeps what it measured
            _write_json(args.json, report)

    common = (name, image_size, train_flops, settings)
    for pipeline in _name_list(args.pipelines):
        profile = args.profile if pipeline == "package" else None
        record("results", pipeline, args.batch_size, measure, pipeline, *common, data=data, profile=profile)
        if pipeline == "package" and args.pad_channels:
            record("results", "package_pad4", args.batch_size, measure, pipeline, *common, data=data, pad_channels=True)
    for batch in _int_list(args.batch_sizes):
        record("batch_sizes", "package", batch, measure, "package", *common, batch, data=data)
    if args.trainer and work_dir is not None:
        record(
            "trainer", "lightning", args.batch_size, lightning_run, *common, args.trainer_epochs, work_dir / "trainer"
        )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # as the package's trainer (trainer.benchmark: true)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    settings = Settings(
        device, args.batch_size, args.steps, args.warmup, args.repeats, args.dataset_size,
        args.workers, args.naive_workers, args.compile, peak, args.seed, args.quick,
    )  # fmt: skip
    models = _name_list(args.models)
    pipelines = _name_list(args.pipelines)
    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown:
        raise SystemExit(f"--pipelines: unknown {unknown}; accepted: {', '.join(PIPELINES)}, none")
    for name in models:
        try:
            model_config(name, args.image_size)
        except ConfigError as err:
            raise SystemExit(f"--models: {err}") from None
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "settings": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "dataset_size": args.dataset_size,
            "stored_size": STORED_SIZE,
            "workers": args.workers,
            "naive_workers": args.naive_workers,
            "compile": args.compile,
            "cudnn_benchmark": device.type == "cuda",
            "quick": args.quick,
            "flops": "training FLOPs per image = 3 x the forward FLOPs counted by torch.utils.flop_counter at the input size",
        },
        "models": {},
        "results": [],
        "batch_sizes": [],
        "trainer": [],
    }
    print(
        f"alexnet_study.bench on {device_name} ({device}); torch {torch.__version__}; peak: {_fmt(peak, 'g', ' TFLOP/s')} ({peak_source})"
    )
    if args.profile is not None and args.profile.exists():
        args.profile.unlink()
    work_dir = args.work_dir or (
        Path(tempfile.mkdtemp(prefix="alexnet_bench_")) if args.trainer or args.sweep else None
    )

    for name in models:
        _bench_model(name, args, settings, report, work_dir)

    for rows in (report["results"], report["batch_sizes"]):
        _add_speedups(rows)
    for row in report["trainer"]:
        base = next((r for r in report["results"] if r["pipeline"] == "package" and r["model"] == row["model"]), None)
        if base is not None and row["images_per_s"] and base["images_per_s"]:
            row["package_speedup"] = base["images_per_s"] / row["images_per_s"]
    report["memory_note"] = memory_note(report)

    if args.sweep:
        report["sweep"] = time_sweep(args.sweep_experiment, args.sweep_overrides.split(), work_dir / "sweep")

    print_table(report["results"], f"Training throughput, batch {args.batch_size} ({device_name})")
    print_table(report["batch_sizes"], "Batch size vs throughput ('package')")
    print_table(report["trainer"], "The package's Lightning loop (train.run), after its first epoch")
    if report["memory_note"]:
        print(f"\n{report['memory_note']}")
    if "sweep" in report:
        sweep = report["sweep"]
        print(f"\nSweep {sweep['experiment']!r}: one after another {sweep['sequential']['seconds']:.1f} s "
              f"({sweep['sequential']['jobs']} jobs), concurrently {sweep['parallel']['seconds']:.1f} s "
              f"({sweep['parallel']['jobs']} jobs)")  # fmt: skip
    if args.json:
        _write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return report


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(report, indent=2) + "\n")


def memory_note(report: dict[str, Any]) -> str:
    """Whether ``package`` could have held a float copy of the dataset at the input size: a peak
    below the size of a bf16 copy (half a float32 one) proves it did not."""
    notes = []
    for row in report["results"]:
        if row.get("pipeline") != "package" or row.get("peak_memory_mib") is None:
            continue
        fp32_mib = report["models"][row["model"]]["float32_dataset_copy_at_input_mib"]
        verdict = (
            "so it held no float copy of the dataset"
            if row["peak_memory_mib"] < fp32_mib / 2
            else "inconclusive at this size: the model's own memory is as large as a copy"
        )
        notes.append(
            f"{row['model']}: the dataset resident as uint8 takes {row['resident_dataset_mib']:,.0f} MiB; peak GPU memory "
            f"{row['peak_memory_mib']:,.0f} MiB, while a copy at {row['image_size']}x{row['image_size']} would take "
            f"{fp32_mib:,.0f} MiB in float32, {fp32_mib / 2:,.0f} MiB in bf16 ({verdict})"
        )
    return "\n".join(notes)


if __name__ == "__main__":
    main()
