"""Where the configs live, the resolvers they use, and composing them outside the command line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_study.config.presets import config_dir


def uses_cuda(accelerator: str = "auto") -> bool:
    """Whether Lightning will train on a CUDA GPU for this ``trainer.accelerator``."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def auto_precision(accelerator: str = "auto") -> str:
    """bf16 mixed precision on GPUs that have it, fp16 mixed on older GPUs, fp32 on the CPU."""
    if not uses_cuda(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def crop_fraction(input_size: int, stored_size: int) -> float:
    """The evaluation centre crop that takes ``input_size`` pixels of a ``stored_size`` image
    (224 of 256: Resize(256) + CenterCrop(224)); the whole image when it is smaller."""
    return min(1.0, input_size / stored_size)


def register_resolvers() -> None:
    """``${auto_precision:...}``, ``${uses_cuda:...}`` and ``${crop_fraction:...}`` in the configs."""
    OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
    OmegaConf.register_new_resolver("uses_cuda", uses_cuda, replace=True)
    OmegaConf.register_new_resolver("crop_fraction", crop_fraction, replace=True)


register_resolvers()


def _compose_as_command_line(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """``config_name`` with ``overrides``, composed as the command line composes it (the ``hydra``
    node included), from a cleared Hydra; sets no ``HydraConfig``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir()), job_name="alexnet_study"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


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
