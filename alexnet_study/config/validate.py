"""Config checks that run before anything is built, loaded or written: ``validate_config(cfg)``.

Two kinds of check, each raising :class:`ConfigError` with one line naming the key, the value
and what is accepted:

- ``_target_`` safety (:func:`check_targets`): configs and overrides may only instantiate public
  callables of torch, torchvision, lightning, torchmetrics and alexnet_study (and, under ``hydra``,
  Hydra's launcher/sweeper plugins and callbacks; logging handlers from ``logging``).
  ``ALEXNET_STUDY_EXTRA_TARGETS`` (comma-separated module prefixes; an environment variable, so
  that no config or override can widen it) adds more, e.g. the tests' ``tests``. Entry points of
  those packages that load or compile arbitrary code (``torch.hub``, ``torch.load``, ...) are
  refused too. A guard against configs calling arbitrary Python, not a sandbox.
- values (:func:`check_values`): names of activations, optimizers and losses, rates, learning
  rate, batch sizes, the model spec (layers, strides, depths) and class counts.
- the launch (:func:`alexnet_study.cluster.distributed.check_launch`): DDP settings that the way this run
  was started (``-m``, the Hydra launcher) cannot honour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet_study.cluster.distributed import check_launch
from alexnet_study.data.files import class_folders, has_images
from alexnet_study.errors import ConfigError, check_int, first_line

ALLOWED_PACKAGES = ("torch", "torchvision", "lightning", "torchmetrics", "alexnet_study")
EXTRA_TARGETS_ENV = "ALEXNET_STUDY_EXTRA_TARGETS"
# Inside the allowed packages, but they fetch, compile or load and run arbitrary code (pickles included).
DENIED_PREFIXES = (
    "torch.hub",
    "torch.utils.model_zoo",
    "torch.utils.cpp_extension",
    "torch.package",
    "torch.load",
    "torch.serialization",
    "torch.ops.load_library",
    "torch.classes.load_library",
    "torch.jit.load",
    "lightning.pytorch.cli",
)
DENIED_SUFFIXES = (".load_from_checkpoint",)
# In the hydra node: Hydra's launcher and sweeper plugins, and its callbacks.
HYDRA_PREFIXES = ("hydra._internal.core_plugins", "hydra.experimental.callbacks", "hydra_plugins")
# Keys of Python's logging config (Hydra's hydra/job_logging) that name a class or factory.
LOGGING_CLASS_KEYS = ("class", "()")
LOGGING_PACKAGES = ("logging", "hydra", "colorlog")  # colorlog: the hydra-colorlog plugin's formatter
# Datasets whose class count is known without reading them, by ``data.variant``.
KNOWN_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def validate_config(cfg: DictConfig) -> None:
    """Every check below; the first problem raises :class:`ConfigError`."""
    check_targets(cfg)
    check_values(cfg)
    _check_launch(cfg)


def _check_launch(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    check_launch(cfg.get("trainer"), multirun=hydra_cfg.mode == RunMode.MULTIRUN, launcher=hydra_cfg.get("launcher"))


# -- _target_ allowlist ----------------------------------------------------------------------------
def allowed_packages() -> tuple[str, ...]:
    extra = [p.strip().rstrip(".") for p in os.environ.get(EXTRA_TARGETS_ENV, "").split(",") if p.strip()]
    return (*ALLOWED_PACKAGES, *extra)


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def target_problem(target: Any, packages: tuple[str, ...]) -> str | None:
    """Why ``target`` may not be instantiated, or ``None`` if it may."""
    if not isinstance(target, str):
        return "must be a dotted path string"
    if not any(_within(target, package) for package in packages):
        return f"not allowed; accepted: callables from {', '.join(packages)} (more via the {EXTRA_TARGETS_ENV} environment variable)"
    denied = next((prefix for prefix in DENIED_PREFIXES if _within(target, prefix)), None)
    denied = denied or next((suffix for suffix in DENIED_SUFFIXES if target.endswith(suffix)), None)
    if denied:
        return f"refused: {denied} loads or runs arbitrary code"
    if any(part.startswith("_") for part in target.split(".")):
        return "refused: private names (a component starting with _) are not accepted"
    return None


def _walk(node: Any, key: str, depth: int = 0) -> Iterator[tuple[str, Any, Any]]:
    """(full key, container, child key) for every entry of ``node``, and of every container an
    interpolation resolves to (``${oc.create:...}`` can make a ``_target_`` out of a string)."""
    if depth > 32:
        raise ConfigError(f"{key}: nested more than 32 levels deep (a self-referencing interpolation?)")
    if isinstance(node, DictConfig):
        children: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig):
        children = list(range(len(node)))
    else:
        return
    for child in children:
        full = f"{key}[{child}]" if isinstance(child, int) else f"{key}.{child}" if key else str(child)
        yield full, node, child
        if OmegaConf.is_missing(node, child):
            continue
        value = node._get_node(child)
        if OmegaConf.is_interpolation(node, child):
            try:
                value = node[child]
            except Exception:  # unresolvable here; instantiating it would fail the same way
                continue
        yield from _walk(value, full, depth + 1)


def check_targets(cfg: DictConfig) -> None:
    """Refuse any ``_target_`` (and logging ``class``/``()``) outside the allowlist, anywhere in ``cfg``."""
    packages = allowed_packages()
    for key, container, child in _walk(cfg, ""):
        in_hydra = key.startswith("hydra.")
        if child == "_target_":
            value = _value(container, child, key)
            problem = target_problem(value, packages)
            if problem and in_hydra and isinstance(value, str) and any(_within(value, p) for p in HYDRA_PREFIXES):
                problem = None  # Hydra's own plugins, which live in hydra._internal
        elif in_hydra and child in LOGGING_CLASS_KEYS and "_logging." in key:
            value = _value(container, child, key)
            problem = target_problem(value, (*packages, *LOGGING_PACKAGES))
        else:
            continue
        if problem:
            raise ConfigError(f"{key}={value!r}: {problem}")


def _value(container: Any, child: Any, key: str) -> Any:
    try:
        return container[child]
    except Exception as err:  # an interpolation that does not resolve
        raise ConfigError(f"{key}: cannot be resolved ({first_line(err)})") from err


# -- values ----------------------------------------------------------------------------------------
def _number(key: str, value: Any, *, minimum: float, inclusive: bool = True, below: float | None = None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (value >= minimum if inclusive else value > minimum) and (below is None or value < below)
    if not ok:
        low = f"{'>=' if inclusive else '>'} {minimum:g}"
        raise ConfigError(
            f"{key}={value!r}: must be a number {low}" + (f" and < {below:g}" if below is not None else "")
        )


def _locatable(key: str, target: Any) -> None:
    """The target names something that exists (``optim._target_=torch.optim.Foo`` fails here)."""
    from hydra._internal.utils import _locate  # what instantiate() uses to find it (internal, stable through 1.3)

    try:
        obj = _locate(str(target))
    except (ImportError, ValueError):
        obj = None
    if obj is None or not callable(obj):
        raise ConfigError(f"{key}={target!r}: no such class or function; check the name (see conf/ for the presets)")


def check_values(cfg: DictConfig) -> None:
    """Names and numbers a run would otherwise trip over later (or silently misuse)."""
    for group in ("model", "optim", "loss", "data", "aug", "trainer"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and node.get("_target_"):
            _locatable(f"{group}._target_", node._target_)
    sched = cfg.get("sched")
    if isinstance(sched, DictConfig) and sched.get("scheduler"):
        _locatable("sched.scheduler._target_", sched.scheduler._target_)

    optim = cfg.get("optim") or {}
    if "lr" in optim:
        _number("optim.lr", optim.lr, minimum=0, inclusive=False)
    if "weight_decay" in optim:
        _number("optim.weight_decay", optim.weight_decay, minimum=0)
    if "momentum" in optim:
        _number("optim.momentum", optim.momentum, minimum=0, below=1)
    loss = cfg.get("loss") or {}
    if "label_smoothing" in loss:
        _number("loss.label_smoothing", loss.label_smoothing, minimum=0, below=1)
    if isinstance(sched, DictConfig) and sched.get("interval", "epoch") not in ("epoch", "step"):
        raise ConfigError(f"sched.interval={sched.interval!r}: accepted: epoch, step")

    data = cfg.get("data") or {}
    for key in ("batch_size", "eval_batch_size"):
        if data.get(key) is not None:
            check_int(f"data.{key}", data[key], 1)
    if "val_fraction" in data:
        _number("data.val_fraction", data.val_fraction, minimum=0, below=1)
    trainer = cfg.get("trainer") or {}
    if trainer.get("max_epochs") is not None and trainer.max_epochs != -1:
        check_int("trainer.max_epochs", trainer.max_epochs, 1)
    if trainer.get("deterministic") not in (None, True, False, "warn"):
        raise ConfigError(f"trainer.deterministic={trainer.deterministic!r}: accepted: true, false, warn")

    _check_num_classes(cfg)  # first: the model's num_classes interpolates data.num_classes
    _check_model(cfg)


def _check_model(cfg: DictConfig) -> None:
    """The model spec (names, rates, strides, kernels, depths), without building the network."""
    from alexnet_study.models.spec import resolve_spec

    model = cfg.get("model")
    # Only the AlexNet builder takes a spec; torchvision's architectures (models/zoo.py) have none.
    if not isinstance(model, DictConfig) or not str(model.get("_target_", "")).endswith("build_alexnet"):
        return
    spec = OmegaConf.to_container(model, resolve=True)
    assert isinstance(spec, dict)
    try:
        resolve_spec(**{k: v for k, v in spec.items() if not k.startswith("_")})
    except TypeError as err:  # a required key deleted from the preset
        raise ConfigError(f"model: {err}") from err


def _check_num_classes(cfg: DictConfig) -> None:
    """The model's outputs, the data's setting and (where knowable without reading data) the dataset agree."""
    data, model = cfg.get("data"), cfg.get("model")
    if not isinstance(data, DictConfig) or "num_classes" not in data:
        return
    if OmegaConf.is_missing(data, "num_classes"):
        raise ConfigError("data.num_classes=???: required for this dataset; set it to the number of classes")
    data_classes = data.num_classes
    check_int("data.num_classes", data_classes, 2)
    model_classes = model.get("num_classes") if isinstance(model, DictConfig) else None
    if model_classes is not None and model_classes != data_classes:
        raise ConfigError(
            f"model.num_classes={model_classes}: the data has data.num_classes={data_classes}; leave "
            "model.num_classes at its default, ${data.num_classes}"
        )
    target = str(data.get("_target_", ""))
    variant = data.get("variant")
    if target.endswith("CIFARDataModule") and variant in KNOWN_NUM_CLASSES:
        expected = KNOWN_NUM_CLASSES[variant]
        if data_classes != expected:
            raise ConfigError(
                f"data.num_classes={data_classes}: {variant} has {expected} classes; set data.num_classes={expected}"
            )
    if target.endswith("ImageFolderDataModule") and data.get("root"):
        train = Path(str(data.root)).expanduser() / "train"
        # Class folders are names in a listing, not data; counted as ImageFolderDataModule counts them
        # (with skip_bad_files, a folder without images is left out rather than reported).
        if train.is_dir():
            folders = class_folders(train)
            if data.get("skip_bad_files"):
                folders = [name for name in folders if has_images(train / name)]
            found = len(folders)
            if found != data_classes:
                raise ConfigError(
                    f"data.num_classes={data_classes}: {train} has {found} class folders; set data.num_classes={found}"
                )
