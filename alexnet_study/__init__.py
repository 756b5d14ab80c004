"""alexnet-study: AlexNet studies with PyTorch Lightning and Hydra.

The notebook API: build a network from a preset, compose a config as the command line does.
"""

from alexnet_study.config import compose, config_dir
from alexnet_study.models import AlexNet, build_alexnet, count_parameters, resolve_spec

__all__ = ["AlexNet", "build_alexnet", "compose", "config_dir", "count_parameters", "resolve_spec"]
__version__ = "0.1.0"
