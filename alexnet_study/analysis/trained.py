"""A trained network with what the views need around it: class names, the input transform, test images.

Built from a live run (the callback: the module and DataModule after testing) or from a run dir
(:func:`load_trained`: the best checkpoint, whose ``hyper_parameters`` hold the run's resolved
config, so the network and the data are rebuilt exactly as they were trained).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from alexnet_study.data.base import DeviceDataModule, Split
from alexnet_study.data.files import decode_image
from alexnet_study.data.transforms import DeviceTransform
from alexnet_study.errors import CheckpointError, DataError, StudyError, first_line
from alexnet_study.training.records import METRICS_FILE

log = logging.getLogger(__name__)

CONFUSION_FILE = "confusion_matrix.csv"


@dataclass
class TrainedModel:
    """``net`` (on ``device``) and its surroundings. ``images`` are uint8 host images of
    ``split`` (the test split, else validation; ``None`` when the dataset could not be read);
    ``confusion`` is the run's own test confusion matrix (every test image) when known."""

    net: nn.Module
    classes: list[str]
    transform: DeviceTransform
    device: torch.device
    stored_size: int
    images: Split | None = None
    split: str = "test"
    confusion: list[list[int]] | None = None
    run_dir: Path | None = None

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) -> the network's input on its device (the evaluation transform)."""
        transform = self.transform.to(self.device)
        with torch.no_grad():
            return transform(images.to(self.device), train=False)

    def display(self, inputs: torch.Tensor) -> torch.Tensor:
        """Network inputs back to [0, 1] images, for drawing."""
        transform = self.transform.to(inputs.device)
        return transform.denormalize(inputs.detach().float())

    @classmethod
    def from_datamodule(
        cls, net: nn.Module, datamodule: DeviceDataModule, device: torch.device, **extra: Any
    ) -> TrainedModel:
        """From a DataModule that has been set up (its test split, else its validation split)."""
        splits = datamodule.splits()
        split = "test" if "test" in splits else "val" if "val" in splits else "train"
        images = splits[split]
        return cls(net, list(datamodule.classes), datamodule.transform, device, images.images.shape[-1],
                   images, split, **extra)  # fmt: skip


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU."""
    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def find_checkpoint(run_dir: Path) -> Path:
    """The checkpoint the run was tested with (``metrics.json``'s ``tested_checkpoint``), else its
    newest ``best-*.ckpt``, else ``last.ckpt``; a :class:`CheckpointError` when there is none."""
    if not run_dir.is_dir():
        raise CheckpointError(
            f"{run_dir}: no such run directory (give the folder a run wrote, e.g. outputs/train/runs/<time>)"
        )
    metrics = _read_json(run_dir / METRICS_FILE)
    tested = Path(str(metrics.get("tested_checkpoint", "")))
    if tested.suffix == ".ckpt" and tested.is_file():
        return tested
    folder = run_dir / "checkpoints"
    candidates = sorted(folder.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime) or sorted(folder.glob("last.ckpt"))
    if not candidates:
        raise CheckpointError(
            f"{run_dir}: no checkpoint in {folder} (best-*.ckpt or last.ckpt); the views need the trained weights "
            "(runs keep them unless callbacks.best_checkpoint and callbacks.last_checkpoint were removed)"
        )
    return candidates[-1]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], DictConfig]:
    """The network's weights (``net.`` prefix removed) and the run's resolved config from a checkpoint."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, pickled code: each raises something else
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(err).__name__}: {first_line(err)})") from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "model" not in hparams or "data" not in hparams:
        raise CheckpointError(
            f"{path}: holds no run config (hyper_parameters with model and data); not written by a run"
        )
    state = {k.removeprefix("net."): v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("net.")}
    return state, OmegaConf.create(hparams)


def build_network(cfg: DictConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """The run's network with its trained weights (ImageNet weights are not fetched: they are overwritten)."""
    from alexnet_study.config.validate import check_targets
    from alexnet_study.training.run import instantiate  # unwraps the one-line config errors

    check_targets(cfg)  # the config came from a file: the same allowlist as the command line's
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    if "pretrained" in model:
        model.update(pretrained=False, weights_path=None)
    net = instantiate(OmegaConf.create(model))
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint's weights do not fit its own model config ({first_line(err)})") from err
    return net


def load_trained(run_dir: str | Path, device: str = "auto", load_data: bool = True) -> TrainedModel:
    """A run dir's trained network (best checkpoint), class names, transform and test images.

    When the dataset cannot be read (moved, or a relative ``data.root`` from another working
    directory) the network is still returned, without images: filters and user images still work.
    """
    run_dir = Path(run_dir)
    path = find_checkpoint(run_dir)
    state, cfg = read_checkpoint(path)
    target = pick_device(device)
    net = build_network(cfg, state).to(target).eval()
    from alexnet_study.training.run import instantiate

    datamodule: DeviceDataModule = instantiate(cfg.data)  # reads nothing yet
    metrics = _read_json(run_dir / METRICS_FILE)
    classes = list(metrics.get("per_class_acc") or {}) or [f"class_{i}" for i in range(int(cfg.data.num_classes))]
    stored = int(cfg.data.get("stored_size") or datamodule.transform.output_size)
    trained = TrainedModel(net, classes, datamodule.transform, target, stored, run_dir=run_dir)
    if load_data:
        try:
            datamodule.setup("test")
        except (StudyError, OSError) as err:
            log.warning(
                "the run's dataset could not be read (%s): views that need test images are skipped", first_line(err)
            )
        else:
            trained = TrainedModel.from_datamodule(net, datamodule, target, run_dir=run_dir)
    trained.confusion = read_confusion(run_dir / CONFUSION_FILE, trained.classes)
    log.info("loaded %s (%s, %d classes)", path, type(net).__name__, len(trained.classes))
    return trained


def read_confusion(path: Path, classes: list[str]) -> list[list[int]] | None:
    """The run's ``confusion_matrix.csv`` (written after its test), if it is there and has these classes."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError:
        return None
    if len(rows) != len(classes) + 1 or rows[0][1:] != classes:
        return None
    try:
        return [[int(value) for value in row[1:]] for row in rows[1:]]
    except ValueError:
        return None


def read_image(path: str | Path, size: int) -> torch.Tensor:
    """A user's image file as uint8 (3, size, size), decoded as the datasets decode theirs (shorter
    side to ``size``, centre crop); a :class:`DataError` naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        return torch.from_numpy(decode_image(path, size)).permute(2, 0, 1).contiguous()
    except Exception as err:  # every way a file can fail to be an image
        raise DataError(
            f"{path}: unreadable image ({type(err).__name__}: {first_line(err)}); give a file PIL reads (JPEG, PNG, ...)"
        ) from err
