"""ImageNet weights from torchvision: where they come from, reading them safely, loading them into a network.

A network's weights come from ``model.weights_path`` when it is set, else from torch's hub cache
(``$TORCH_HOME/hub/checkpoints/<torchvision's file name>``, e.g. ``alexnet-owt-7be5be79.pth``),
else torchvision downloads them into that cache. Every file is read with
``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code.

Before loading, the network is compared module by module with torchvision's own model, so a
spec that differs from the pretrained layout is refused naming the first layer that differs. The
last layer (the head) is the one exception: it keeps its new, randomly initialised weights for
``num_classes``.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import torch
import torchvision
from torch import nn

from alexnet_study.errors import ConfigError, DataError, first_line, quoted, unpickling_detail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    """One of torchvision's published weight files (``arch``'s ``weights`` entry, e.g. IMAGENET1K_V1)."""

    arch: str
    weights: str
    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def weights_file(arch: str, weights: str = "DEFAULT") -> WeightsFile:
    """torchvision's weight file for ``arch`` (``DEFAULT``: torchvision's recommended ImageNet weights)."""
    try:
        entries = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise ConfigError(f"model.arch={arch!r}: torchvision publishes no weights for it") from None
    try:
        entry = entries[weights]
    except KeyError:
        accepted = ", ".join(["DEFAULT", *(e.name for e in entries)])
        raise ConfigError(f"model.weights={weights!r}: unknown for {arch}; accepted: {accepted}") from None
    return WeightsFile(arch, entry.name, entry.url)


def hub_checkpoints_dir() -> Path:
    """Where torch caches downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A weight file's ``state_dict``, read with ``weights_only=True``.

    Accepts a plain ``state_dict`` (torchvision's files) or a Lightning checkpoint of this project
    (its ``state_dict``, whose network weights are under ``net.``). A file holding anything but
    tensors and plain containers (a pickled object, code) is refused with a :class:`DataError`.
    """
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(
            f"{quoted(path)}: refused: torch.load(weights_only=True) found more than tensors in it "
            f"({unpickling_detail(err)}); weight files must hold a plain state_dict (re-save it with "
            "torch.save(model.state_dict(), path))"
        ) from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(
            f"{quoted(path)}: not a readable weight file ({type(err).__name__}: {first_line(err)}); download it again"
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else loaded
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(
            f"{quoted(path)}: holds a {type(loaded).__name__}, not a state_dict (parameter names -> tensors)"
        )
    if any(key.startswith("net.") for key in state):
        state = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}
    return dict(state)


def fetch_state_dict(
    arch: str, weights: str = "DEFAULT", weights_path: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, where it came from): ``weights_path``, else the hub cache, else a download into it.

    Offline without a cached file this raises one :class:`DataError` line naming the file, the
    directory it was looked for in, and how to put it there.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"model.weights_path={str(weights_path)!r}: no such file")
        return read_state_dict(path), str(path)
    file = weights_file(arch, weights)
    directory = hub_checkpoints_dir()
    cached = directory / file.file_name
    if cached.is_file():
        # Read it ourselves, without a hash check (as torchvision treats its cache): a re-saved file loads too.
        return read_state_dict(cached), str(cached)
    log.info("downloading %s ImageNet weights %s into %s", arch, file.url, directory)
    try:
        state = torch.hub.load_state_dict_from_url(
            file.url, model_dir=str(directory), map_location="cpu", check_hash=True, weights_only=True
        )
    except (OSError, HTTPException, RuntimeError) as err:  # URLError, timeouts: OSError; a bad hash: RuntimeError
        reason = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"no {arch} ImageNet weights: {file.file_name} is not in {directory} and downloading {file.url} failed "
            f"({type(err).__name__}: {reason}); download it on a machine with internet and copy it into {directory} "
            f"(the hub cache: $TORCH_HOME/hub/checkpoints), or pass model.weights_path=/path/to/{file.file_name}"
        ) from None
    return dict(state), f"{cached} (downloaded from {file.url})"


def describe(module: nn.Module) -> str:
    """A module's layout: its type and the settings that shape its weights and outputs."""
    if isinstance(module, nn.Linear):  # DropConnectLinear too: its rate is regularization, not layout
        return f"Linear({module.in_features} -> {module.out_features})"
    if isinstance(module, nn.Dropout | nn.Identity):
        return type(module).__name__
    settings = re.sub(r"(, )?inplace=\w+", "", module.extra_repr()).strip(", ")
    return f"{type(module).__name__}({settings})"


def _same_layout(mine: nn.Module, reference: nn.Module, is_head: bool) -> bool:
    # Dropout and an Identity in its place (DropConnect keeps the slot) both pass inputs through at inference.
    if isinstance(mine, nn.Dropout | nn.Identity) and isinstance(reference, nn.Dropout | nn.Identity):
        return True
    if is_head:  # the head is replaced: only its input must match
        return (
            isinstance(mine, nn.Linear)
            and isinstance(reference, nn.Linear)
            and mine.in_features == reference.in_features
        )
    return describe(mine) == describe(reference)


def check_layout(net: nn.Module, reference: nn.Module, head: str, what: str, names: Mapping[str, str]) -> None:
    """Refuse ``net`` unless it is laid out exactly like ``reference`` (torchvision's model) apart from
    the head's output size; the error names the first layer that differs (``names``: path -> name)."""

    def leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(path, m) for path, m in module.named_modules() if path and not any(m.children())]

    mine, theirs = leaves(net), leaves(reference)
    for i in range(max(len(mine), len(theirs))):
        path, module = mine[i] if i < len(mine) else ("", None)
        ref_path, ref_module = theirs[i] if i < len(theirs) else ("", None)
        same = module is not None and ref_module is not None and path == ref_path
        if same and _same_layout(module, ref_module, is_head=path == head):
            continue
        where = path or ref_path
        label = f"{names[where]} ({where})" if where in names else where
        here = f"{describe(module)} at {path}" if module is not None else "nothing"
        there = f"{describe(ref_module)} at {ref_path}" if ref_module is not None else "nothing"
        raise ConfigError(
            f"model.pretrained=true: {what} differs from the layout of its ImageNet weights first at {label}: "
            f"{here} in this model, {there} in torchvision's; pretrained weights need the unchanged layout "
            "(no layer, width, depth, stride or activation changes), or model.pretrained=false"
        )


def load_backbone(
    net: nn.Module, state: Mapping[str, torch.Tensor], head: str, source: str, names: Mapping[str, str]
) -> int:
    """Copy every weight but the head's from ``state`` into ``net``; return how many tensors were copied.

    The file must hold exactly ``net``'s other keys with their shapes; the error names the first
    layer that differs (a file for another architecture, a truncated or edited state_dict).
    """
    is_head = re.compile(rf"^{re.escape(head)}\.")
    expected = {k: v.shape for k, v in net.state_dict().items() if not is_head.match(k)}
    given = {k: v for k, v in state.items() if not is_head.match(k)}
    for key in [*expected, *(k for k in given if k not in expected)]:
        if key in expected and key in given and tuple(given[key].shape) == tuple(expected[key]):
            continue
        module_path = key.rsplit(".", 1)[0]
        label = f"{names[module_path]} ({key})" if module_path in names else key
        if key not in given:
            problem = "missing from the file"
        elif key not in expected:
            problem = "in the file but not in this model"
        else:
            problem = f"shape {tuple(given[key].shape)} in the file, {tuple(expected[key])} in this model"
        raise DataError(
            f"{source}: does not fit this model at {label}: {problem}; is it the right architecture's file?"
        )
    net.load_state_dict(given, strict=False)
    return len(given)
