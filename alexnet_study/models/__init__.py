"""Model builders: one configurable AlexNet, driven by the specs in ``conf/model/``."""

from alexnet_study.models.builder import AlexNet, build_alexnet, count_parameters
from alexnet_study.models.spec import ConvSpec, ModelSpec, PoolSpec, resolve_spec

__all__ = ["AlexNet", "ConvSpec", "ModelSpec", "PoolSpec", "build_alexnet", "count_parameters", "resolve_spec"]
