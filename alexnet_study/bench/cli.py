"""``python -m alexnet_study.bench [--device cuda] [--json PATH]``: training throughput.

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

The pipelines live in :mod:`~alexnet_study.bench.pipelines`, the timing in
:mod:`~alexnet_study.bench.timing`, the Lightning loop and the sweep in
:mod:`~alexnet_study.bench.lightning_loop`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alexnet_study.bench.device import peak_tflops, reset_memory
from alexnet_study.bench.lightning_loop import SWEEP_OVERRIDES, lightning_run, time_sweep
from alexnet_study.bench.pipelines import PIPELINES, STORED_SIZE, cifar_like, model_config, model_stats
from alexnet_study.bench.timing import Settings, measure
from alexnet_study.errors import ConfigError, first_line
from alexnet_study.training.callbacks.provenance import write_atomically


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
        "(random 32x32 images, resized to the model's input). See docs/performance.md.",
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
    add(
        "--trainer",
        action="store_true",
        help="also time the package's own Lightning loop (training.run.run; needs Hydra)",
    )
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
            reset_memory(settings.device)
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
    device = _device(args.device)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    settings = Settings(
        device, args.batch_size, args.steps, args.warmup, args.repeats, args.dataset_size,
        args.workers, args.naive_workers, args.compile, peak, args.seed, args.quick,
    )  # fmt: skip
    models = _checked_models(args)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report = _new_report(args, device, device_name, peak, peak_source)
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
    _compare(report)
    if args.sweep:
        report["sweep"] = time_sweep(args.sweep_experiment, args.sweep_overrides.split(), work_dir / "sweep")
    _print_report(report, args.batch_size, device_name)
    if args.json:
        _write_json(args.json, report)
        print(f"\nwrote {args.json}")
    return report


def _device(name: str) -> torch.device:
    """The device to measure on; on CUDA, made current and with cuDNN autotuning as the trainer has it."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA GPU here; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # as the package's trainer (trainer.benchmark: true)
    return device


def _checked_models(args: argparse.Namespace) -> list[str]:
    """``--models``, each a readable preset, after ``--pipelines`` is checked."""
    unknown = [p for p in _name_list(args.pipelines) if p not in PIPELINES]
    if unknown:
        raise SystemExit(f"--pipelines: unknown {unknown}; accepted: {', '.join(PIPELINES)}, none")
    models = _name_list(args.models)
    for name in models:
        try:
            model_config(name, args.image_size)
        except ConfigError as err:
            raise SystemExit(f"--models: {err}") from None
    return models


def _new_report(
    args: argparse.Namespace, device: torch.device, device_name: str, peak: float | None, peak_source: str
) -> dict[str, Any]:
    """The JSON report before any measurement: the machine and the settings."""
    return {
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


def _compare(report: dict[str, Any]) -> None:
    """Speed-ups over ``package`` for every row, and the memory note."""
    for rows in (report["results"], report["batch_sizes"]):
        _add_speedups(rows)
    for row in report["trainer"]:
        base = next((r for r in report["results"] if r["pipeline"] == "package" and r["model"] == row["model"]), None)
        if base is not None and row["images_per_s"] and base["images_per_s"]:
            row["package_speedup"] = base["images_per_s"] / row["images_per_s"]
    report["memory_note"] = memory_note(report)


def _print_report(report: dict[str, Any], batch_size: int, device_name: str) -> None:
    print_table(report["results"], f"Training throughput, batch {batch_size} ({device_name})")
    print_table(report["batch_sizes"], "Batch size vs throughput ('package')")
    print_table(report["trainer"], "The package's Lightning loop (training.run.run), after its first epoch")
    if report["memory_note"]:
        print(f"\n{report['memory_note']}")
    if "sweep" in report:
        sweep = report["sweep"]
        print(f"\nSweep {sweep['experiment']!r}: one after another {sweep['sequential']['seconds']:.1f} s "
              f"({sweep['sequential']['jobs']} jobs), concurrently {sweep['parallel']['seconds']:.1f} s "
              f"({sweep['parallel']['jobs']} jobs)")  # fmt: skip


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
