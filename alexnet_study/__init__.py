"""alexnet-study: AlexNet studies with PyTorch Lightning and Hydra.

The notebook API: build a network from a preset, compose a config as the command line does.

``compose`` and ``config_dir`` are imported on first use, so that the parts that need neither
Hydra nor OmegaConf (the models, the data pipeline, ``python -m alexnet_study.bench``) import
without them.
"""

from typing import Any

from alexnet_study.models import AlexNet, build_alexnet, count_parameters, resolve_spec

__all__ = ["AlexNet", "build_alexnet", "compose", "config_dir", "count_parameters", "resolve_spec"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("compose", "config_dir"):
        from alexnet_study import config

        return getattr(config, name)
    raise AttributeError(f"module 'alexnet_study' has no attribute {name!r}")
