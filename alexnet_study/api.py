"""The Python API for notebooks and scripts: build and inspect models, train, load results.

Everything here goes through the same configs and code as the command line: a model is a
``conf/model`` preset plus overrides, a training run is ``compose`` + ``training.run.run``, and the
figures are the sweep report's own (:mod:`alexnet_study.report.plots`, :func:`report.sweep_figures`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from alexnet_study.config.compose import compose
from alexnet_study.config.presets import preset as read_preset
from alexnet_study.models.builder import AlexNet, count_parameters
from alexnet_study.report import collect, write_report
from alexnet_study.report.collect import history
from alexnet_study.training.records import METRICS_FILE, finished_metrics

# -- models -----------------------------------------------------------------------------------


def build_model(
    preset: str = "alexnet", num_classes: int = 10, normalize: str = "imagenet", **overrides: Any
) -> nn.Module:
    """A network from a ``conf/model`` preset, with any spec key or study knob overridden.

    Only the model preset is read: the data, trainer and logger groups play no part. The two
    values a preset takes from the data (``num_classes`` and its ``normalize``) are arguments.

    >>> net = build_model("alexnet_tflearn", num_classes=17, pool_strides=[3, 3, 2], dropout=[0.4, 0.3])
    """
    from alexnet_study.training.run import instantiate  # unwraps the one-line config errors

    root = OmegaConf.create(
        {"model": read_preset("model", preset), "data": {"num_classes": num_classes, "normalize": normalize}}
    )
    node = OmegaConf.merge(root.model, overrides)
    root.model = node
    return instantiate(root.model)


@dataclass
class LayerSummary:
    """One layer of a :class:`ModelSummary`."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int


@dataclass
class ModelSummary:
    """Per-layer output shapes, parameters and forward FLOPs for one input size."""

    input_shape: tuple[int, ...]
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int
    flops: int

    def __str__(self) -> str:
        lines = [f"{'layer':<10}{'type':<20}{'output':>14}{'params':>14}{'MFLOPs':>12}"]
        for layer in self.layers:
            shape = "x".join(map(str, layer.output_shape[1:]))
            lines.append(f"{layer.name:<10}{layer.kind:<20}{shape:>14}{layer.params:>14,}{layer.flops / 1e6:>12,.1f}")
        lines.append(
            f"input {'x'.join(map(str, self.input_shape[1:]))}: {self.total_params:,} parameters "
            f"({self.trainable_params:,} trainable), {self.flops / 1e9:.3f} GFLOPs forward per image"
        )
        return "\n".join(lines)


def summarize(model: nn.Module, input_size: int | None = None, in_channels: int | None = None) -> ModelSummary:
    """Run one image of ``input_size`` (the spec's by default) through ``model`` and report
    every layer's output shape, parameters and forward FLOPs (2 per multiply-add, PyTorch's
    flop counter). AlexNet layers carry the paper's names (conv1 ... fc8)."""
    spec = getattr(model, "spec", None)
    size = input_size or (spec.input_size if spec else 224)
    channels = in_channels or (spec.in_channels if spec else 3)
    names = {path: name for name, path in model.layer_paths.items()} if isinstance(model, AlexNet) else {}
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for path, module in model.named_modules():
        if path and not list(module.children()):
            hooks.append(
                module.register_forward_hook(lambda _m, _i, out, p=path: shapes.__setitem__(p, tuple(out.shape)))
            )
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, size, size, device=device))
    except RuntimeError as err:
        raise ValueError(
            f"this model does not take a {size}x{size} input ({err}); build it for that size instead, "
            f"e.g. build_model(..., input_size={size})"
        ) from err
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    per_module = {key: sum(ops.values()) for key, ops in counter.get_flop_counts().items()}
    prefix = type(model).__name__
    layers = [
        LayerSummary(
            name=names.get(path, path),
            kind=type(model.get_submodule(path)).__name__,
            output_shape=shape,
            params=sum(p.numel() for p in model.get_submodule(path).parameters()),
            flops=per_module.get(f"{prefix}.{path}", 0),
        )
        for path, shape in shapes.items()
    ]
    total, trainable = count_parameters(model)
    return ModelSummary((1, channels, size, size), layers, total, trainable, counter.get_total_flops())


# -- training ---------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished (or failed) run: its dir, ``metrics.json``, per-epoch history and config."""

    run_dir: Path
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> list[dict[str, float]]:
        return history(self.metrics)


def fit(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> Run:
    """Train (and test) in this process exactly as ``python -m alexnet_study OVERRIDES`` would.

    (Named ``fit`` because ``alexnet_study.training.run`` is the module that does the work.)

    The run dir defaults to ``outputs/notebook/runs/<time>`` under the working directory.
    Returns the :class:`Run` (metrics as written to ``metrics.json``).
    """
    from alexnet_study.training.run import run

    run_dir = Path(output_dir or Path("outputs/notebook/runs") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f"))
    cfg = compose(overrides, output_dir=run_dir.resolve())
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    config.pop("hydra", None)
    # The record Hydra keeps for command-line runs, so load_run and reports read both alike; a run
    # that finished there keeps its own (run() then keeps its metrics too).
    record = run_dir / ".hydra"
    if finished_metrics(run_dir) is None:
        record.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(config), record / "config.yaml")
        if not (record / "overrides.yaml").is_file():
            OmegaConf.save(OmegaConf.create(list(overrides)), record / "overrides.yaml")
    metrics = run(cfg)
    return Run(run_dir, metrics, config)


def sweep(
    grid: Mapping[str, Sequence[Any]], overrides: Sequence[str] = (), sweep_dir: str | Path | None = None
) -> Path:
    """Run every combination of ``grid`` (``{"optim.lr": [0.01, 0.1], "seed": [0, 1]}``) one
    after another in this process, in the layout of a Hydra sweep dir (``<dir>/<job>/`` with
    ``.hydra/overrides.yaml``), then write its report. For small notebook studies; the command
    line's ``-m`` does the same with Hydra's launchers."""
    root = Path(sweep_dir or Path("outputs/notebook/multiruns") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f"))
    keys = list(grid)
    for number, values in enumerate(itertools.product(*(grid[k] for k in keys))):
        job_overrides = [*overrides, *(f"{k}={v}" for k, v in zip(keys, values, strict=True))]
        job_dir = root / str(number)
        try:
            fit(job_overrides, output_dir=job_dir)
        except Exception as err:  # recorded in the job's metrics.json, as a sweep does
            print(f"job {number} failed: {type(err).__name__}: {err}")
    write_report(root)
    return root


# -- results ----------------------------------------------------------------------------------


def load_run(run_dir: str | Path) -> Run:
    """A run dir's ``metrics.json`` (with its per-epoch ``history``) and resolved config."""
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    config_file = run_dir / ".hydra" / "config.yaml"
    config = OmegaConf.to_container(OmegaConf.load(config_file)) if config_file.is_file() else {}
    return Run(run_dir, metrics, config if isinstance(config, dict) else {})


def load_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """The sweep report's table as a DataFrame, one row per job. Works on finished, failed and
    partial sweeps."""
    return pd.DataFrame(collect(sweep_dir).rows())
