"""``provenance.json``: what produced a run (code, versions, device, seed, data) and how each attempt ended.

Written when the run starts (status ``running``), again once the data is loaded (its
fingerprint) and when the run ends. A run resumed in the same directory appends an attempt, so
the file tells the whole story of a run that was killed and continued. Hydra's ``.hydra/`` beside
it holds the composed config and the command-line overrides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch

from alexnet_study.errors import space_left

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.json"
PACKAGES = ("alexnet-study", "torch", "torchvision", "lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` through ``.<name>.tmp`` beside it: a reader (a sweep report, a
    resumed run) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag (tracked files changed) of the repository around ``cwd``; nulls without git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "repo": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "repo": git("rev-parse", "--show-toplevel"),
    }


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    found["cuda"] = torch.version.cuda
    found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return found


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()})"


def dataset_fingerprint(datamodule: Any) -> dict[str, Any]:
    """File count and a hash: the loader's file-list fingerprint when it has one (image folders),
    else a BLAKE2 hash of every split's images and labels (CIFAR, synthetic: ~0.2 s for CIFAR-10)."""
    dataset = getattr(datamodule, "dataset", None)
    if dataset is None:
        return {"name": getattr(datamodule, "name", None), "loaded": False}
    info = {k: v for k, v in dataset.info.items() if k != "bad_files"}
    splits = datamodule.splits()
    result: dict[str, Any] = {
        "name": datamodule.name,
        "classes": len(dataset.classes),
        "splits": {name: len(split) for name, split in splits.items()},
        **info,
    }
    if "fingerprint" in info:
        result["fingerprint_of"] = "file list (paths, sizes, modification times) and decoding settings"
        return result
    digest = hashlib.blake2b(digest_size=16)
    for name, split in splits.items():
        digest.update(name.encode())
        for tensor in (split.images, split.labels):
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    result["fingerprint"] = digest.hexdigest()
    result["fingerprint_of"] = "the decoded tensors (images and labels of every split)"
    return result


class Provenance:
    """The run's ``provenance.json``, written after every change (it is small).

    Each attempt (a run started again in the same directory) is appended to ``attempts`` with its
    own command and outcome. The top-level fields (command, git, versions, device, dataset, status)
    say what produced the run's results: once a run has finished ``ok`` they stay until another
    attempt finishes ``ok`` and replaces those results, so a later failed attempt is listed, but
    never passes for what produced them.
    """

    def __init__(self, output_dir: Path, cfg: Any, seed: int | None) -> None:
        self.path = output_dir / PROVENANCE_FILE
        previous = self._read()
        program = "python -m alexnet_study" if Path(sys.argv[0]).name == "__main__.py" else Path(sys.argv[0]).name
        self.fields: dict[str, Any] = {
            "command": [program, *sys.argv[1:]],
            "seed": seed,
            "deterministic": cfg.get("trainer", {}).get("deterministic"),
            "git": git_state(Path.cwd()),
            "versions": versions(),
            "device": None,
            "dataset": None,
        }
        self.finished = (
            {k: v for k, v in previous.items() if k != "attempts"} if previous.get("status") == "ok" else None
        )
        self.attempts: list[dict[str, Any]] = list(previous.get("attempts", []))
        self.attempt: dict[str, Any] = {
            "started_at": now(),
            "finished_at": None,
            "status": "running",
            "command": self.fields["command"],
        }
        self.attempts.append(self.attempt)
        self.write()

    @property
    def record(self) -> dict[str, Any]:
        """What ``provenance.json`` holds."""
        top = self.finished if self.finished is not None else self.fields
        return {**top, "attempts": self.attempts}

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)
        self.write()

    def finish(self, status: str, *, results: bool = True, **fields: Any) -> None:
        """Record how this attempt ended; ``results``: whether its metrics are now the run's (an
        attempt that kept a finished run's metrics, or failed, leaves the top-level fields alone).
        Raises :class:`OSError` if the file cannot be written."""
        self.attempt.update(finished_at=now(), status=status, **fields)
        if self.finished is None or (status == "ok" and results):
            self.finished = None
            self.fields.update(
                status=status, started_at=self.attempts[0]["started_at"], finished_at=self.attempt["finished_at"]
            )
        write_atomically(self.path, self._text())

    def write(self) -> None:
        try:
            write_atomically(self.path, self._text())
        except OSError as err:  # provenance must never be what fails a run (e.g. a full disk)
            log.warning("could not write %s: %s (%s)", self.path, err, space_left(self.path.parent))

    def _text(self) -> str:
        return json.dumps(self.record, indent=2, default=str) + "\n"


class RecordDataset(L.Callback):
    """Adds the dataset fingerprint and the device to ``provenance.json`` once the data is set up."""

    def __init__(self, provenance: Provenance) -> None:
        self.provenance = provenance

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.provenance.fields.get("dataset") is None and trainer.datamodule is not None:
            self.provenance.update(
                dataset=dataset_fingerprint(trainer.datamodule), device=device_name(trainer.strategy.root_device)
            )
