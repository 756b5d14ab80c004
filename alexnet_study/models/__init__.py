"""Model builders: one configurable AlexNet driven by the specs in ``conf/model/``, torchvision's ResNets and
VGGs, and the transfer options (ImageNet weights, freezing) they share."""

from alexnet_study.models.builder import AlexNet, build_alexnet, count_parameters
from alexnet_study.models.spec import ConvSpec, ModelSpec, PoolSpec, resolve_spec
from alexnet_study.models.zoo import build_torchvision

__all__ = [
    "AlexNet",
    "ConvSpec",
    "ModelSpec",
    "PoolSpec",
    "build_alexnet",
    "build_torchvision",
    "count_parameters",
    "resolve_spec",
]
