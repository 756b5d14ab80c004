"""A study's arms: the jobs that share every setting but the seed, named by what they change.

An arm's settings are its varying overrides; a variant (``variant/stride=s332_dropconnect43``) is
opened up into the values its YAML sets (pool strides, dropout, DropConnect), read from the job's
own config. Its label is the variant's declared ``report.arm``, or ``name value`` of each setting.
Arms come in the order the sweep ran them (the order the experiment declares), the baseline first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from alexnet_study.config.compose import config_dir
from alexnet_study.report.collect import Job, Sweep

# Readable names of the settings studies vary (a key not listed keeps its config path).
NAMES = {
    "model.pool_strides": "pool strides", "model.dropout": "dropout", "model.dropconnect": "DropConnect",
    "model.conv_depth": "conv layers", "model.fc_depth": "FC layers", "model.activation": "activation",
    "model.batchnorm": "BatchNorm", "model.freeze": "frozen", "model.pretrained": "ImageNet weights",
    "model": "model", "optim": "optimizer", "optim.lr": "lr", "optim.momentum": "momentum",
    "optim.weight_decay": "weight decay", "loss": "loss", "aug": "augmentation", "sched": "schedule",
    "sched.scheduler.gamma": "StepLR gamma", "sched.scheduler.step_size": "StepLR step",
    "data.batch_size": "batch", "epochs": "epochs",
}  # fmt: skip


@dataclass
class Arm:
    """The runs of one setting: its label, its settings by readable name, and its jobs."""

    label: str
    overrides: dict[str, str]
    settings: dict[str, str]
    jobs: list[Job] = field(default_factory=list)
    baseline: bool = False

    @property
    def done(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "ok"]

    def values(self, column: str) -> list[float]:
        """``column`` (a metrics key) of each finished run."""
        values = [job.metrics.get(column) for job in self.done]
        return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


@dataclass
class Design:
    """The arms of a sweep, its baseline and what the experiment declares about it."""

    arms: list[Arm]
    question: str | None
    baseline_note: str | None  # why the baseline is the first arm, when it was not declared or not found

    @property
    def baseline(self) -> Arm | None:
        return self.arms[0] if self.arms else None


def design(sweep: Sweep) -> Design:
    """Group ``sweep``'s jobs into arms, in the order they ran, the declared baseline first."""
    keys = sweep.settings()
    arms: dict[tuple[str | None, ...], Arm] = {}
    for job in sweep.jobs:
        key = tuple(job.overrides.get(k) for k in keys)
        if key not in arms:
            overrides = {k: v for k, v in zip(keys, key, strict=True) if v is not None}
            settings = _settings(job, overrides)
            arms[key] = Arm(_label(job, overrides, settings, sweep), overrides, settings)
        arms[key].jobs.append(job)
    ordered = list(arms.values())
    declared = _declared(sweep, "report.baseline")
    note = None
    if declared is None:
        note = "the first arm: the sweep declares no report.baseline"
    else:
        wanted = [str(o).partition("=") for o in (declared if isinstance(declared, list) else [declared])]
        alone = len(ordered) == 1
        found = [arm for arm in ordered if all(_same(_value(arm, k.lstrip("+"), alone), v) for k, _, v in wanted)]
        if found:
            ordered.remove(found[0])
            ordered.insert(0, found[0])
        else:
            note = f"the first arm: the declared baseline {declared} is not an arm of this sweep"
    if ordered:
        ordered[0].baseline = True
    return Design(ordered, _declared(sweep, "report.question"), note)


def _value(arm: Arm, key: str, alone: bool) -> str | None:
    """What the arm sets ``key`` to: its varying override; for a sweep's only arm (repeats of one
    recipe), also its config (``model.batchnorm=false`` given once on the command line). Beside other
    arms, a setting they all share does not single one out as the baseline."""
    if key in arm.overrides or not alone:
        return arm.overrides.get(key)
    setting = arm.jobs[0].setting(key) if arm.jobs else None
    return None if setting is None else str(setting)


def _same(value: str | None, declared: str) -> bool:
    """Whether an override's value is the declared one (``1.0e-2`` is ``0.01``; Hydra writes a swept
    ``false`` as ``False``, and reads true/false in any case)."""
    if value is None:
        return False
    if value == declared or (value.lower() in ("true", "false") and value.lower() == str(declared).lower()):
        return True
    try:
        return float(value) == float(declared)
    except ValueError:
        return False


def _declared(sweep: Sweep, key: str) -> Any:
    """What the first job's config says under ``key`` (the experiment's declaration), or None."""
    for job in sweep.jobs:
        value = job.setting(key)
        if value is not None:
            return value
    return None


def _settings(job: Job, overrides: dict[str, str]) -> dict[str, str]:
    """Readable name -> value of every setting the arm's overrides set (a variant's values opened up)."""
    settings: dict[str, str] = {}
    for key, value in overrides.items():
        for path in _variant_keys(key, value) or [key]:
            if path.startswith("report."):
                continue
            setting = job.setting(path)
            settings[NAMES.get(path, path)] = format_value(value if setting is None else setting)
    return settings


def _variant_keys(key: str, option: str) -> list[str]:
    """The config keys (and groups) a variant YAML sets, [] when ``key`` is no variant group."""
    if not key.startswith("variant/"):
        return []
    path = config_dir() / key / f"{option}.yaml"
    if not path.is_file():
        return []
    variant = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(variant, dict):
        return []
    groups = []
    for entry in variant.pop("defaults", None) or []:
        if isinstance(entry, dict):
            groups += [str(group).removeprefix("override ").lstrip("/") for group in entry]
    return groups + [path for path, _ in _leaves(variant)]


def _leaves(node: dict, prefix: str = "") -> list[tuple[str, Any]]:
    leaves = []
    for key, value in node.items():
        leaves += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return leaves


def _label(job: Job, overrides: dict[str, str], settings: dict[str, str], sweep: Sweep) -> str:
    """The variant's declared label (``report.arm``) for a variant, else ``name value`` per setting."""
    declared = job.setting("report.arm")
    parts = []
    for key, value in overrides.items():
        if key.startswith("variant/") and declared:
            parts.append(str(declared))
            continue
        names = [NAMES.get(path, path) for path in _variant_keys(key, value) or [key]]
        parts += [f"{name} {settings[name]}" for name in names if name in settings]
    if not overrides:  # nothing varies: the sweep is one arm (repeats of one recipe)
        return "all runs"
    return ", ".join(parts) or f"job {job.name}"


def format_value(value: Any) -> str:
    """A setting for a table or label: lists of ints as 3-3-2, of floats as 0.4/0.3, booleans yes/no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        separator = "-" if all(isinstance(v, int) and not isinstance(v, bool) for v in value) else "/"
        return separator.join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
