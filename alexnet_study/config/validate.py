"""Config checks that run before anything is built, loaded or written: ``validate_config(cfg)``.

Each raises :class:`ConfigError` with one line naming the key, the value and what is accepted:

- ``_target_`` safety (:func:`check_targets`): the config, fully resolved (every interpolation and
  resolver evaluated, the plain containers they make included), may instantiate only the callables
  in :data:`ALLOWED_TARGETS`, compared by identity (the object a dotted name resolves to), never
  by package. ``ALEXNET_STUDY_EXTRA_TARGETS`` (comma-separated module prefixes, read once when this
  module is imported, before Hydra can change the environment) is the only way to add more, e.g.
  the tests' ``tests``. A guard against configs calling arbitrary Python, not a sandbox.
- checks that span components (each component checks its own values where it uses them):
  the model's and the data's class counts agree with the dataset; the launch
  (:func:`alexnet_study.cluster.distributed.check_launch`) can honour the DDP settings.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, InterpolationToMissingValueError, MissingMandatoryValue

from alexnet_study.cluster.distributed import check_launch
from alexnet_study.config.compose import config_dir, run_seed
from alexnet_study.data.folders import train_classes
from alexnet_study.errors import ConfigError, StudyError, check_int, first_line

EXTRA_TARGETS_ENV = "ALEXNET_STUDY_EXTRA_TARGETS"


def _prefixes(value: str) -> tuple[str, ...]:
    return tuple(p.strip().rstrip(".") for p in value.split(",") if p.strip())


# Read once, at import (the entry point imports this before Hydra runs): ``hydra.job.env_set`` and
# anything else a config controls changes the environment only later.
EXTRA_TARGET_PREFIXES = _prefixes(os.environ.get(EXTRA_TARGETS_ENV, ""))

# Every callable a config of this project instantiates (grep _target_ conf/), and nothing else: none of
# them imports modules, unpickles files, loads libraries or runs commands (tests/config/test_config.py checks).
ALLOWED_TARGETS = (
    # optimizers, schedulers, losses
    "torch.optim.SGD",
    "torch.optim.Adam",
    "torch.optim.AdamW",
    "torch.optim.RMSprop",
    "torch.optim.Adadelta",
    "torch.optim.lr_scheduler.StepLR",
    "torch.optim.lr_scheduler.MultiStepLR",
    "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.OneCycleLR",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
    "torch.nn.CrossEntropyLoss",
    # Lightning: the Trainer and the callbacks and loggers the configs use
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.TQDMProgressBar",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.TensorBoardLogger",
    # torchmetrics (built by ImageClassifier)
    "torchmetrics.MaxMetric",
    "torchmetrics.MeanMetric",
    "torchmetrics.classification.MulticlassAccuracy",
    "torchmetrics.classification.MulticlassConfusionMatrix",
    # alexnet_study's public builders
    "alexnet_study.models.build_alexnet",
    "alexnet_study.models.build_torchvision",
    "alexnet_study.training.losses.OneHotBCEWithLogitsLoss",
    "alexnet_study.data.Augment",
    "alexnet_study.data.CIFARDataModule",
    "alexnet_study.data.Caltech101DataModule",
    "alexnet_study.data.Flowers17DataModule",
    "alexnet_study.data.HymenopteraDataModule",
    "alexnet_study.data.ImageFolderDataModule",
    "alexnet_study.data.SyntheticDataModule",
    "alexnet_study.training.callbacks.checkpointing.LastCheckpoint",
    "alexnet_study.training.callbacks.divergence.DivergenceGuard",
    "alexnet_study.training.callbacks.dataset_views.DatasetViews",
    "alexnet_study.bench.lightning_loop.SyncCounter",
    "alexnet_study.report.SweepReport",
    "alexnet_study.analysis.AnalysisViews",
    # Hydra's launchers and sweepers, the project's Optuna sweeper, conf/hydra/launcher's plugins
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.alexnet_study_sweeper.optuna_sweeper.OptunaStudySweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    # Hydra's logging config (``class`` and ``()``)
    "logging.StreamHandler",
    "logging.FileHandler",
    "logging.NullHandler",
    "logging.Formatter",
    "colorlog.ColoredFormatter",
)
# Keys of Python's logging config (Hydra's hydra/job_logging) that name a class or factory.
LOGGING_CLASS_KEYS = ("class", "()")
LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")  # logging imports any other ext:// module
# Environment variables that would load code into this process's children (DDP workers, compilers),
# by prefix and by name.
CODE_LOADING_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON")
CODE_LOADING_ENV = ("BASH_ENV", "ENV", "PATH", EXTRA_TARGETS_ENV)
# Datasets whose class count is known without reading them, by ``data.variant``.
KNOWN_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def validate_config(cfg: DictConfig) -> None:
    """Every check below; the first problem raises :class:`ConfigError`."""
    check_groups(cfg)
    check_targets(cfg)
    check_run_settings(cfg)
    _check_optimizer(cfg)
    _check_num_classes(cfg)
    _check_model(cfg)
    _check_launch(cfg)


def _check_launch(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    check_launch(cfg.get("trainer"), multirun=hydra_cfg.mode == RunMode.MULTIRUN, launcher=hydra_cfg.get("launcher"))


# -- _target_ allowlist ----------------------------------------------------------------------------
def allowed_callables() -> dict[int, tuple[str, Any]]:
    """``id(object) -> (name, object)`` for every name in :data:`ALLOWED_TARGETS` that imports here
    (a plugin whose extra is not installed is left out: it cannot be instantiated either). Looked up
    anew each time: Hydra's plugin scan executes plugin modules again, making new class objects."""
    found: dict[int, tuple[str, Any]] = {}
    for name in ALLOWED_TARGETS:
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
        found[id(obj)] = (name, obj)
    return found


def _lookup(path: str) -> Any:
    """What ``path`` names, found as Hydra's ``_locate`` finds it (attributes from the top module
    down) but only among modules already imported: looking a name up never imports its code."""
    parts = path.split(".")
    obj = sys.modules.get(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if obj is None:
            return None
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = sys.modules.get(".".join(parts[:i]))
    return obj


def _extra(target: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in EXTRA_TARGET_PREFIXES)


def target_problem(target: Any) -> str | None:
    """Why ``target`` may not be instantiated, or ``None`` if it may."""
    if isinstance(target, str) and _extra(target) and not any(p.startswith("_") for p in target.split(".")):
        return None  # widened by whoever started the process
    allowed = allowed_callables()
    obj = _lookup(target) if isinstance(target, str) else target
    if obj is not None and id(obj) in allowed:
        return None
    hint = f"accepted: the callables listed in alexnet_study/config/validate.py (more only via {EXTRA_TARGETS_ENV})"
    if obj is None or not callable(obj):
        return f"no such class or function; check the name ({hint})"
    return f"not allowed; {hint}"


def _resolved(node: Any, key: str, depth: int = 0) -> Iterator[tuple[str, Any, Any, Any]]:
    """(full key, child key, value, parent) for every entry of ``node`` with its value resolved, and of every
    container a value resolves to: ``${oc.decode:...}`` can make a plain dict holding a ``_target_``,
    which Hydra's instantiate turns into a config of its own (so it is resolved here as one)."""
    if depth > 32:
        raise ConfigError(f"{key}: nested more than 32 levels deep (a self-referencing interpolation?)")
    if isinstance(node, dict | list | tuple):
        try:
            node = OmegaConf.create(list(node) if isinstance(node, tuple) else node, flags={"allow_objects": True})
        except Exception as err:
            raise ConfigError(f"{key}: cannot be read as a config ({first_line(err)})") from None
    if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
        children: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig) and not node._is_none() and not node._is_missing():
        children = list(range(len(node)))
    else:
        return
    for child in children:
        full = f"{key}[{child}]" if isinstance(child, int) else f"{key}.{child}" if key else str(child)
        try:
            value = node[child]
        except (MissingMandatoryValue, InterpolationToMissingValueError):
            continue  # ??? is reported where it is used; a missing value makes no _target_
        except Exception as err:
            raise _user_error_behind(err) or ConfigError(f"{full}: cannot be resolved ({first_line(err)})") from None
        yield full, child, value, node
        yield from _resolved(value, full, depth + 1)


def _loads_code(variable: str) -> bool:
    return variable in CODE_LOADING_ENV or variable.startswith(CODE_LOADING_ENV_PREFIXES)


def check_targets(cfg: Any) -> None:
    """Refuse any ``_target_`` (and logging ``class``/``()``) not on the allowlist, anywhere in
    ``cfg`` resolved; and environment variables under ``hydra.job.env_set`` that load code."""
    for key, child, value, parent in _resolved(cfg, ""):
        logging_config = key.startswith(("hydra.job_logging.", "hydra.hydra_logging."))
        if child == "_target_":
            problem = target_problem(value)
            if problem is None:
                _check_settings(key.removesuffix("._target_"), parent, value)
        elif logging_config and child in LOGGING_CLASS_KEYS:
            problem = target_problem(value)
        elif logging_config and isinstance(value, str) and value.startswith("ext://") and value not in LOGGING_STREAMS:
            problem = f"accepted: {', '.join(LOGGING_STREAMS)} (logging imports the module an ext:// names)"
        elif key == f"hydra.job.env_set.{child}" and _loads_code(str(child)):
            problem = (
                "refused: it would load code or widen the allowlist; set it in the environment the command starts in"
            )
        else:
            continue
        if problem:
            raise ConfigError(f"{key}={value!r}: {problem}")


# Keys Hydra's instantiate reads itself, not passed to the target.
INSTANTIATE_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


def _check_settings(key: str, node: Any, target: Any) -> None:
    """Every key beside an allowed ``_target_`` is a parameter of it (unless it takes ``**kwargs``):
    ``+analysis.foo=1`` would otherwise end in a TypeError traceback when, or after, the run starts."""
    accepted = _parameters(_lookup(target) if isinstance(target, str) else target)
    if accepted is None:
        return
    for name in node:
        if name not in INSTANTIATE_KEYS and name not in accepted:
            shown = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"{shown}={node[name]!r}: not a setting of {target}; accepted: {', '.join(accepted)}")


def _parameters(obj: Any) -> list[str] | None:
    """The keyword parameters ``obj`` accepts, following ``**kwargs`` up a class's bases (a DataModule
    passes its own on to DeviceDataModule); ``None`` when ``**kwargs`` takes anything."""
    names: list[str] = []
    for init in [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]:
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return [n for n in dict.fromkeys(names) if n != "self"]
    return None


# -- settings no component of this project owns: the seed, the config groups, Lightning's Trainer ------
REQUIRED_GROUPS = ("data", "model", "optim", "sched", "loss", "trainer")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def check_groups(cfg: DictConfig) -> None:
    """Every config group a run needs is there (``~model`` removes one)."""
    for group in REQUIRED_GROUPS:
        if not isinstance(cfg.get(group), DictConfig):
            presets = sorted(p.stem for p in (config_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))
            raise ConfigError(f"{group}={cfg.get(group)!r}: required; accepted: {', '.join(presets)} (conf/{group}/)")


def check_run_settings(cfg: DictConfig) -> None:
    """The seed, the epochs, and the Trainer settings Lightning would reject with a traceback (or
    later, mid-run)."""
    run_seed(cfg)
    if cfg.get("epochs") is not None:  # trainer.max_epochs and the schedules follow it
        check_int("epochs", cfg.epochs, 1, "(a run limited by steps alone: trainer.max_epochs=-1 +trainer.max_steps=N)")
    _check_trainer(cfg.trainer)


def _check_trainer(trainer: DictConfig) -> None:
    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if max_steps != -1:
        check_int("trainer.max_steps", max_steps, 1, "(or -1: no step limit)")
    if max_epochs is not None and (max_epochs != -1 or max_steps == -1):
        check_int("trainer.max_epochs", max_epochs, 1, "(-1 only with a step limit, trainer.max_steps)")
    limit = trainer.get("limit_train_batches")
    if limit is not None and not (isinstance(limit, float) and 0 < limit <= 1):
        check_int("trainer.limit_train_batches", limit, 1, "(or a fraction in (0, 1])")
    if trainer.get("deterministic") not in (None, True, False, "warn"):
        raise ConfigError(f"trainer.deterministic={trainer.deterministic!r}: accepted: true, false, warn")
    precisions = list(
        dict.fromkeys(str(p) for group in typing.get_args(_PRECISION_INPUT) for p in typing.get_args(group))
    )
    if trainer.get("precision") is not None and str(trainer.precision) not in precisions:
        raise ConfigError(f"trainer.precision={trainer.precision!r}: accepted: {', '.join(precisions)}")
    accelerator = trainer.get("accelerator", "auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator!r}: accepted: {', '.join(ACCELERATORS)}")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator!r}: this machine has no CUDA GPU; accepted: auto, cpu")


def _check_optimizer(cfg: DictConfig) -> None:
    """The optimizer's and schedule's hyperparameters by :class:`ImageClassifier`'s rules, before
    anything is written (the module checks them again when it is built outside a run)."""
    from alexnet_study.training.module import OPTIMIZER_RULES, SCHEDULER_RULES, check_hyperparameters

    check_hyperparameters("optim", cfg.optim, OPTIMIZER_RULES)
    if isinstance(cfg.sched.get("scheduler"), DictConfig):
        check_hyperparameters("sched.scheduler", cfg.sched.scheduler, SCHEDULER_RULES)


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
    data_classes = _data_value(data, "num_classes")
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
        root = Path(str(data.root)).expanduser()
        # Class folders are names in a listing, not data: counted here as the DataModule counts them.
        if (root / "train").is_dir():
            found = len(train_classes(root, bool(data.get("skip_bad_files"))))
            if found != data_classes:
                raise ConfigError(
                    f"data.num_classes={data_classes}: {root / 'train'} has {found} class folders; set "
                    f"data.num_classes={found} or leave it out (then the folders are counted)"
                )


def _data_value(node: DictConfig, key: str) -> Any:
    """``node[key]``; a user error raised while resolving it (``${count_classes:...}`` on a root
    without train/) surfaces as itself, any other resolution failure as one ConfigError line."""
    try:
        return node[key]
    except InterpolationResolutionError as err:
        raise _user_error_behind(err) or ConfigError(f"data.{key}: cannot be resolved ({first_line(err)})") from err


def _user_error_behind(err: BaseException) -> StudyError | None:
    """The :class:`StudyError` a resolver raised, which OmegaConf wraps (twice), or ``None``."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, StudyError):
        cause = cause.__cause__ or cause.__context__
    return cause
