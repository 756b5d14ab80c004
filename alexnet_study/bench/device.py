"""The device side of a measurement: synchronizing, peak memory, and the GPU's peak FLOP/s for MFU."""

from __future__ import annotations

import gc

import torch

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


# -- device helpers ---------------------------------------------------------------------------
def sync(device: torch.device) -> None:
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


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA GPUs that have it (as the package's ``auto_precision``), else fp32: the benchmark
    compares the input pipelines on the CPU in fp32."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
