"""Helpers shared by the tests in this folder."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import hydra
import pytest
import torch
import torchvision
from omegaconf import DictConfig, OmegaConf
from torch import nn

from alexnet_study.config.compose import compose
from alexnet_study.models import AlexNet, build_alexnet
from alexnet_study.models.layers import DropConnectLinear
from alexnet_study.models.pretrained import weights_file

PRESETS = ["alexnet", "alexnet_2012", "alexnet_bn", "alexnet_tflearn", "alexnet_cifar", "convnet"]
INPUT_SIZES = {
    "alexnet": 227,
    "alexnet_2012": 227,
    "alexnet_bn": 227,
    "alexnet_tflearn": 227,
    "alexnet_cifar": 32,
    "convnet": 32,
}
# Width of the flattened feature map that enters the first FC layer, at the preset's own input size.
FLAT_FEATURES = {
    "alexnet": 256 * 6 * 6,
    "alexnet_2012": 256 * 6 * 6,
    "alexnet_bn": 256 * 6 * 6,
    "alexnet_tflearn": 256 * 8 * 8,
    "alexnet_cifar": 256 * 4 * 4,
    "convnet": 128 * 4 * 4,
}
ACTIVATION_TYPES = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
ALL_ACTIVATION_TYPES = tuple(ACTIVATION_TYPES.values())


@dataclass(frozen=True)
class Conv:
    """The geometry of one conv layer of a preset, written out here to check the builder against."""

    out_channels: int
    kernel: int
    stride: int
    padding: int
    pool_kernel: int | None = None  # max-pool after the conv (stride 2 unless overridden)
    pool_padding: int = 0


GEOMETRY = {
    "alexnet": [
        Conv(64, 11, 4, 2, 3),
        Conv(192, 5, 1, 2, 3),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1),
        Conv(256, 3, 1, 1, 3),
    ],
    "alexnet_2012": [
        Conv(96, 11, 4, 0, 3),
        Conv(256, 5, 1, 2, 3),
        Conv(384, 3, 1, 1),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1, 3),
    ],
    "alexnet_tflearn": [
        Conv(96, 11, 4, 4, 3, 1),
        Conv(256, 5, 1, 2, 3, 1),
        Conv(384, 3, 1, 1),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1, 3, 1),
    ],
    "alexnet_cifar": [
        Conv(64, 3, 1, 1, 2),
        Conv(192, 3, 1, 1, 2),
        Conv(384, 3, 1, 1),
        Conv(256, 3, 1, 1),
        Conv(256, 3, 1, 1, 2),
    ],
    "convnet": [Conv(32, 3, 1, 1, 2), Conv(64, 3, 1, 1, 2), Conv(128, 3, 1, 1, 2)],
}
GEOMETRY["alexnet_bn"] = GEOMETRY["alexnet"]


@dataclass(frozen=True)
class Step:
    """A layer the feature map goes through: its name, the map it receives (channels x size x size), its output side."""

    layer: str
    channels: int
    size: int
    out: int
    out_channels: int


def out_side(size: int, kernel: int, stride: int, padding: int) -> int:
    """The conv / max-pool output formula (floor mode), written independently of the package."""
    return (size + 2 * padding - kernel) // stride + 1


def trace(
    geometry: list[Conv], input_size: int, conv_strides: Any = None, pool_strides: Any = None, in_channels: int = 3
) -> list[Step]:
    """The feature map through the conv layers, stopping at the first layer whose output side is < 1."""
    conv_strides = list(conv_strides or [c.stride for c in geometry])
    pool_strides = list(pool_strides or [2 for c in geometry if c.pool_kernel])
    steps: list[Step] = []
    channels, size = in_channels, input_size
    for i, conv in enumerate(geometry, start=1):
        out = out_side(size, conv.kernel, conv_strides[i - 1], conv.padding)
        steps.append(Step(f"conv{i}", channels, size, out, conv.out_channels))
        if out < 1:
            return steps
        channels, size = conv.out_channels, out
        if conv.pool_kernel:
            out = out_side(size, conv.pool_kernel, pool_strides.pop(0), conv.pool_padding)
            steps.append(Step(f"pool{i}", channels, size, out, channels))
            if out < 1:
                return steps
            size = out
    return steps


def with_changes(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with Hydra-style dotted keys set (``layers.0.stride``: list indices allowed)."""
    config = copy.deepcopy(config)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node: Any = config
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return config


def build(config: dict[str, Any], **knobs: Any) -> AlexNet:
    """Build a model config (with sweep knobs) on the meta device: shapes and counts only."""
    with torch.device("meta"):
        return build_alexnet(**{**config, **knobs})


def build_real(config: dict[str, Any], **knobs: Any) -> AlexNet:
    """Build a (small) model config with sweep knobs on the CPU, with real weights."""
    return build_alexnet(**{**config, **knobs})


def instantiate_on_meta(cfg: DictConfig) -> AlexNet:
    """Build ``cfg.model`` as the command line does (Hydra's instantiate), on the meta device."""
    with torch.device("meta"):
        model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, AlexNet)
    return model


def meta_input(size: int, n: int = 2) -> torch.Tensor:
    return torch.empty(n, 3, size, size, device="meta")


def modules_of(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def classifier_layout(model: AlexNet) -> list[str]:
    """The classifier as short names: 'dropout(0.5)', 'linear', 'dropconnect(0.5)', 'relu', 'identity', ..."""
    names = []
    for m in model.classifier:
        if isinstance(m, DropConnectLinear):
            names.append(f"dropconnect({m.p})")
        elif isinstance(m, nn.Linear):
            names.append("linear")
        elif isinstance(m, nn.Dropout):
            names.append(f"dropout({m.p})")
        elif isinstance(m, nn.Identity):
            names.append("identity")
        else:
            names.append(next(k for k, t in ACTIVATION_TYPES.items() if type(m) is t))
    return names


@pytest.fixture(scope="session")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """A preset's model config as the command line composes it (``data=synthetic``: 10 classes), as a dict.

    Composed once per preset; every call returns a fresh copy (without ``_target_``) to modify.
    """
    root = tmp_path_factory.mktemp("presets")
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cfg = compose([f"model={name}", "data=synthetic", f"paths.root_dir={root}"], output_dir=root / "run")
            config = OmegaConf.to_container(cfg.model, resolve=True)
            assert isinstance(config, dict)
            assert config.pop("_target_") == "alexnet_study.models.build_alexnet"
            cache[name] = config
        return copy.deepcopy(cache[name])

    return get


@pytest.fixture(scope="session")
def planted_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds random AlexNet and ResNet-50 weights under torchvision's file names."""
    home = tmp_path_factory.mktemp("torch_home")
    directory = home / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    for arch in ("alexnet", "resnet50"):
        torch.save(random_state_dict(arch), directory / weights_file(arch).file_name)
    return home


@pytest.fixture
def torch_home(monkeypatch: pytest.MonkeyPatch, planted_home: Path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(planted_home))
    return planted_home


@pytest.fixture(autouse=True)
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download fails as it does offline; the list records the URLs that were tried."""
    tried: list[str] = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        tried.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tried


def random_state_dict(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision's ``arch`` keys and shapes with random values: what a test plants as a weight file."""
    with torch.device("meta"):
        reference = torchvision.models.get_model(arch)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, tensor in reference.state_dict().items():
        if not tensor.is_floating_point():
            state[key] = torch.zeros(tensor.shape, dtype=tensor.dtype)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(tensor.shape, generator=generator)
        else:
            state[key] = 0.01 * torch.randn(tensor.shape, generator=generator)
    return state
