"""Timing a pipeline: steady-state windows after warm-up, host syncs per step, a torch profile."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet_study.bench.device import SYNC_WARNING, peak_memory_mib, reset_memory, sync
from alexnet_study.bench.pipelines import PIPELINES, Run, loader_run, model_only_run, package_run
from alexnet_study.errors import ConfigError


def time_windows(run: Run, device: torch.device, warmup: int, steps: int, repeats: int) -> tuple[list[float], float]:
    """Seconds of each of ``repeats`` windows of ``steps`` steps after ``warmup`` untimed steps;
    the device is synchronized before and after each window, never inside it. Also returns the
    last loss (one sync, after the timing)."""
    run.steps(warmup)
    sync(device)
    seconds = []
    loss = torch.zeros(())
    for _ in range(repeats):
        start = time.perf_counter()
        loss = run.steps(steps)
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds, float(loss)


class SyncLog:
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
    sync(device)
    log = SyncLog()
    log.start()
    try:
        run.steps(steps)
    finally:
        log.stop()
    sync(device)
    return log.syncs / steps, sorted(log.sites)


def profile_run(run: Run, device: torch.device, path: Path, title: str, steps: int = 5) -> None:
    """Append a torch.profiler table of ``steps`` steps (ops sorted by device time) to ``path``."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    with profile(activities=activities) as prof:
        run.steps(steps)
        sync(device)
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
    reset_memory(device)
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
        "peak_memory_mib": peak_memory_mib(device),
        "host_syncs_per_step": syncs,
        "host_sync_sites": sync_sites,
        "final_loss": loss,
        **run.settings,
    }
    del run
    reset_memory(device)
    return row
