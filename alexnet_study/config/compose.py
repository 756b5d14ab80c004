"""Where the configs live, the resolvers they use, and composing them outside the command line."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_study.config.presets import config_dir
from alexnet_study.errors import ConfigError, check_int


def uses_cuda(accelerator: str = "auto") -> bool:
    """Whether Lightning will train on a CUDA GPU for this ``trainer.accelerator``."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


# CPU flags (Linux /proc/cpuinfo) of bf16 instructions: autocast's bf16 convolutions and matmuls run on them.
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has bf16 instructions. Where that cannot be read (macOS, Windows), False."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in CPU_BF16_FLAGS)


def auto_precision(accelerator: str = "auto") -> str:
    """bf16 mixed precision on GPUs that have it, fp16 mixed on older GPUs; on the CPU, bf16 mixed where it
    has bf16 instructions (the laptop CIFAR-10 recipe trains 1.8x faster there at the same accuracy:
    docs/performance.md), else fp32."""
    if not uses_cuda(accelerator):
        return "bf16-mixed" if accelerator in ("auto", "cpu") and cpu_has_bf16() else "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def count_classes(root: str, skip_bad_files: bool = False) -> int:
    """The number of classes an image-folder tree at ``root`` trains on (``data.num_classes``'s
    default for ``data=image_folder``), counted as its DataModule counts them."""
    from alexnet_study.data.folders import train_classes  # imported here: configs without it stay light

    return len(train_classes(root, skip_bad_files))


MAX_SEED = 2**32 - 1  # what Lightning's seed_everything accepts


def run_seed(cfg: DictConfig) -> int | None:
    """The seed a run trains with: ``seed + repeat`` (a sweep's ``repeats`` set ``repeat``), or None.
    The one place the seed is checked: ``validate_config`` calls this before anything is built."""
    if cfg.get("seed") is None:
        return None
    seed = check_int("seed", cfg.seed, 0) + check_int("repeat", cfg.get("repeat") or 0, 0)
    if seed > MAX_SEED:
        raise ConfigError(
            f"seed={cfg.seed}: must be an integer in 0..{MAX_SEED} (with repeat={cfg.get('repeat') or 0})"
        )
    return seed


def register_resolvers() -> None:
    """``${auto_precision:...}``, ``${uses_cuda:...}`` and ``${count_classes:...}`` in the configs."""
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("uses_cuda", uses_cuda, replace=True)
    OmegaConf.register_new_resolver("count_classes", count_classes, replace=True)


register_resolvers()


def _compose_as_command_line(
    config_name: str,
    overrides: Sequence[str],
    *,
    config_path: str | None = None,
    extra_dir: str | None = None,
    multirun: bool = False,
) -> DictConfig:
    """``config_name`` with ``overrides``, composed as the command line composes it (the ``hydra``
    node included; ``--config-path`` and ``--config-dir`` as Hydra applies them), from a cleared
    Hydra; sets no ``HydraConfig``."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    GlobalHydra.instance().clear()
    entry_point = str(Path(__file__).with_name("__main__.py"))  # what --config-path is relative to
    search_path = create_automatic_config_search_path(entry_point, None, config_path or str(config_dir()))
    if extra_dir is not None:
        search_path.prepend("command-line", f"file://{os.path.abspath(extra_dir)}", SearchPathQuery(provider="schema"))
    try:
        hydra = Hydra.create_main_hydra2(task_name="alexnet_study", config_search_path=search_path)
        mode = RunMode.MULTIRUN if multirun else RunMode.RUN
        return hydra.compose_config(config_name, list(overrides), run_mode=mode, with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()


def compose(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None, config_name: str = "config"
) -> DictConfig:
    """Compose a config exactly as ``python -m alexnet_study OVERRIDES`` would (for notebooks and tests).

    ``output_dir`` stands in for the run directory Hydra would create (``paths.output_dir``).
    """
    from hydra.core.hydra_config import HydraConfig

    cfg = _compose_as_command_line(config_name, overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg
