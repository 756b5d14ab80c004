"""Checkpoints a run can resume from: written atomically, found again by ``resume=auto``, checked before use.

- :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in its own folder and
  renames it into place: a kill or a full disk never leaves a truncated file under the real name.
  The file it replaces is kept as ``<name>.prev.ckpt`` until the run ends well.
- :class:`LastCheckpoint` writes ``last.ckpt`` (the full training state) at every epoch end,
  every N optimizer steps if asked, and when SIGTERM stops the run.
- :class:`ResumeState` adds what Lightning leaves out of a checkpoint (the RNG states) and hands
  the training loader its position, so a resumed run draws the same batches and random numbers
  as one that was never interrupted.
- :func:`resume_checkpoint` turns ``resume``/``ckpt_path`` into a checked path, or ``None``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any, BinaryIO

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from alexnet_study.errors import (
    CheckpointError,
    ConfigError,
    check_int,
    first_line,
    no_space,
    quoted,
    space_left,
    unpickling_detail,
)

log = logging.getLogger(__name__)

LAST = "last.ckpt"
# What a checkpoint needs to continue training (a best-* checkpoint holds weights only).
FULL_STATE_KEYS = frozenset({"state_dict", "optimizer_states", "loops", "epoch", "global_step"})


def previous_path(path: Path) -> Path:
    """Where the generation before ``path`` is kept: ``last.ckpt`` -> ``last.prev.ckpt``."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every filesystem lets a directory be opened.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks.

    Lightning's own writer stages the file in the system temp folder and moves it into place,
    which is a plain (interruptible) copy when that folder is on another filesystem. This one
    writes ``.<name>.tmp`` next to the target, fsyncs it and ``os.replace``-s it. A failed write
    (disk full, no permission) raises :class:`CheckpointError` naming the file (and, for a full
    disk, the space left); the checkpoint already there stays as it was. Whatever stops a save,
    the temporary file is removed.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        previous = previous_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                # Room first: at most two full copies (the current one and the new one) on disk at once.
                previous.unlink(missing_ok=True)
            with open(tmp, "wb") as file:
                _save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            if path.exists():
                os.replace(path, previous)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException as err:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # never a partial file left behind, whatever went wrong
            if not isinstance(err, OSError):
                raise
            kept = (
                f"{path} still holds the previous state"
                if path.exists()
                else "the checkpoints already there are intact"
            )
            # Measured after the partial file is gone: what the next attempt will find.
            reason = (
                f"{err.strerror or err} ({space_left(path.parent)} there)" if no_space(err) else err.strerror or err
            )
            raise CheckpointError(
                f"could not write checkpoint {path}: {reason}; {kept}. Free disk space or make "
                f"{path.parent} writable, then run the same command again to resume from {LAST}"
            ) from err

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        previous_path(Path(path)).unlink(missing_ok=True)


class _RecordingWriter:
    """The file object handed to ``torch.save``, keeping the :class:`OSError` of a failed write:
    torch's zip writer reports one as a ``RuntimeError`` ("unexpected pos ...") that names neither
    the errno nor the file."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def _save(checkpoint: dict[str, Any], file: BinaryIO) -> None:
    """``torch.save`` into ``file``; a failed write raises its own :class:`OSError`, any other error as itself."""
    writer = _RecordingWriter(file)
    try:
        torch.save(checkpoint, writer)  # type: ignore[arg-type]
    except RuntimeError as err:
        failed_write = writer.error or no_space(err)
        if failed_write is None:
            raise  # not a write failure (e.g. an object that cannot be pickled): not ours to rename
        raise failed_write from err


class LastCheckpoint(Checkpoint):
    """Writes ``<dirpath>/last.ckpt`` with the full training state, for ``resume=auto``.

    Saved after every training epoch (after validation and the epoch's metrics are recorded),
    every ``every_n_train_steps`` optimizer steps if that is > 0 (the training loader then
    resumes mid-epoch at the next batch), and when SIGTERM stops the run. A SIGTERM that arrives
    during validation lets the validation finish first (seconds), so the state saved is a whole
    epoch: Lightning cannot resume a validation halfway. The previous generation
    (``last.prev.ckpt``) is removed once training has finished.

    A :class:`Checkpoint` subclass, so Lightning calls it after the other callbacks' epoch-end hooks.
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_train_steps: int = 0) -> None:
        self.every_n_train_steps = check_int(
            "callbacks.last_checkpoint.every_n_train_steps", every_n_train_steps, 0, hint="(0: save at epoch ends only)"
        )
        self.path = Path(dirpath) / LAST
        self._saved_step = -1
        self._deferred_sigterm = False

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0  # not halfway through an accumulation
        # The epoch's last batch is left to on_train_epoch_end, which also covers its validation.
        last_batch = batch_idx + 1 >= trainer.num_training_batches
        if (
            n
            and stepped
            and not last_batch
            and trainer.global_step % n == 0
            and trainer.global_step != self._saved_step
        ):
            self.save(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        connector = getattr(trainer, "_signal_connector", None)
        if trainer.state.fn == "fit" and not trainer.sanity_checking and getattr(connector, "received_sigterm", False):
            # Lightning would stop mid-validation, a state it cannot resume from: hold the flag back.
            connector.received_sigterm = False
            self._deferred_sigterm = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation at the epoch's end: release the flag after the epoch-end save (below);
        # validation within an epoch: now, and on_exception saves the state after it.
        if self._deferred_sigterm and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._release_sigterm(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        self._release_sigterm(trainer)  # Lightning stops right after this epoch's end hooks

    def _release_sigterm(self, trainer: L.Trainer) -> None:
        if self._deferred_sigterm:
            self._deferred_sigterm = False
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Only SIGTERM: a failed save, a divergence or a bug must not overwrite the last good state.
        if not isinstance(exception, SIGTERMException) or not trainer.training or trainer.sanity_checking:
            return
        if trainer.global_step == self._saved_step:
            log.warning("SIGTERM: stopping; %s holds this step's state", self.path)
        else:
            log.warning("SIGTERM: saving %s before stopping", self.path)
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            previous_path(self.path).unlink(missing_ok=True)  # training is over: one generation is enough


class ResumeState(L.Callback):
    """Puts into each checkpoint what Lightning leaves out, and restores it when training resumes.

    - The RNG states (torch, CUDA, NumPy, Python): augmentation and dropout then draw the same
      numbers after a resume as without one.
    - The training loader's position: Lightning restores a stateful loader only when it first
      creates it after loading the checkpoint, but ``estimated_stepping_batches`` (OneCycleLR's
      step count, asked for in ``configure_optimizers``) creates it earlier; the saved position
      is applied here at the start of training instead.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # Plain lists and numbers: Lightning loads checkpoints with torch.load(weights_only=True).
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _apply_pending_loader_state(trainer)
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _apply_pending_loader_state(trainer: L.Trainer) -> None:
    """Hand the training loader the position Lightning read from the checkpoint but did not apply."""
    loop = trainer.fit_loop
    pending = getattr(loop, "_combined_loader_states_to_load", None)
    loader = getattr(loop, "_combined_loader", None)
    fetcher = getattr(loop, "_data_fetcher", None)
    if not pending or loader is None or fetcher is None:
        return
    loader._load_state_dicts(pending)
    loop._combined_loader_states_to_load = []
    iter(fetcher)  # fresh iterators that start at the restored position


def check_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a readable checkpoint with the full training state."""
    try:
        # mmap: reads the index and the small objects; tensors stay on disk until touched.
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as err:  # a pickled object or code: read as data, never run
        raise CheckpointError(
            f"{quoted(path)}: refused: torch.load(weights_only=True) found more than tensors in it "
            f"({unpickling_detail(err)}); checkpoints must come from this project's own runs"
        ) from None
    except Exception as err:  # a truncated zip, garbage, an empty file: each raises something else
        raise CheckpointError(
            f"{quoted(path)}: unreadable checkpoint ({type(err).__name__}: {first_line(err)})"
        ) from err
    missing = FULL_STATE_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else FULL_STATE_KEYS
    if missing:
        raise CheckpointError(
            f"{quoted(path)}: not a full training state (no {', '.join(sorted(missing))}; a best-* checkpoint holds weights "
            f"only); resume from a {LAST}"
        )


def resume_checkpoint(resume: Any, ckpt_path: Any, output_dir: Path) -> tuple[Path | None, list[str]]:
    """The checkpoint to continue from, and warnings to record; ``None`` means start fresh.

    ``ckpt_path`` (explicit) must exist and be a full training state. ``resume=auto`` takes
    ``<output_dir>/checkpoints/last.ckpt``; if that is missing or unreadable it falls back to
    ``last.prev.ckpt`` with a warning. An unreadable checkpoint with nothing to fall back on is
    an error: a run never silently starts afresh over one.
    """
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path={ckpt_path}: no such file; give an existing {LAST}, or ckpt_path=null to start fresh"
            )
        check_checkpoint(path)
        return path, []
    if resume is None or resume is False:
        return None, []
    if resume != "auto":
        raise ConfigError(f"resume={resume!r}: accepted: auto (continue from {LAST} if the run dir has one), null")
    last = output_dir / "checkpoints" / LAST
    problems: list[str] = []
    for candidate in (last, previous_path(last)):
        if not candidate.exists():
            if candidate == last and previous_path(last).exists():
                problems.append(f"{last} is missing")
            continue
        try:
            check_checkpoint(candidate)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        warnings = [f"{problem}; resuming from the previous checkpoint {candidate}" for problem in problems]
        for warning in warnings:
            log.warning("%s", warning)
        log.info("resume=auto: continuing from %s", candidate)
        return candidate, warnings
    if problems:
        raise CheckpointError(
            f"resume=auto: {'; '.join(problems)}; and there is no earlier checkpoint to fall back on. Move "
            f"{last.parent} away to start this run afresh, or point ckpt_path at another {LAST}"
        )
    log.info("resume=auto: no %s yet, starting fresh", last)
    return None, []
