"""The divergence guard: stop a run whose loss became NaN or infinite before such weights are saved."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from alexnet_study.errors import DivergenceError, check_int

log = logging.getLogger(__name__)


class DivergenceGuard(L.Callback):
    """Raises :class:`DivergenceError` (epoch, step, learning rate) when the training loss is not finite.

    Nothing is read back from the device per step: each step's loss is copied into a small
    device buffer, and the host looks at the buffer (one sync) every ``check_every_n_steps``
    steps, before each validation, and before anything can be saved (validation and epoch ends,
    every checkpoint), where it also checks that every weight is finite. So NaN weights never
    become ``best`` or ``last``.

    Args:
        check_every_n_steps: steps between two reads of the loss buffer; the run stops at most
            this many steps after the loss first became non-finite.
    """

    def __init__(self, check_every_n_steps: int = 5) -> None:
        self.check_every_n_steps = check_int("callbacks.divergence_guard.check_every_n_steps", check_every_n_steps, 1)
        self._losses: torch.Tensor | None = None
        # Host-side facts about each buffered step: (epoch, step, learning rate).
        self._steps: list[tuple[int, int, float | None]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self._losses is None or self._losses.device != loss.device:
            self._losses = torch.empty(self.check_every_n_steps, dtype=torch.float32, device=loss.device)
            self._steps = []
        # A device-to-device copy: queued like any kernel, no host sync.
        self._losses[len(self._steps)] = loss.detach().float()
        self._steps.append(self._position(trainer))
        if len(self._steps) >= self.check_every_n_steps:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.check(trainer)  # no point validating weights a NaN loss has already wrecked

    # Lightning skips callbacks' on_save_checkpoint for weights-only saves (the best checkpoint),
    # so the hooks that precede those saves check too; this callback runs before checkpoint callbacks.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: L.Trainer | None = None, pl_module: L.LightningModule | None = None) -> None:
        """Read the buffered losses (one device sync) and raise at the first non-finite one; with
        ``pl_module``, also check that every weight is finite (the last update can break them
        before any loss shows it).

        Under DDP every process checks at the same points (each runs as many steps) and the verdict
        is reduced over them (one small all-reduce): a loss that turned NaN on one process stops
        all of them together, not just that one while the others wait for it in the next step.
        """
        checked = bool(self._steps) or pl_module is not None  # the same on every process
        problem = self._loss_problem()
        if problem is None and trainer is not None and pl_module is not None:
            params = [p.detach().isfinite().all() for p in pl_module.parameters()]
            if params and not bool(torch.stack(params).all()):
                problem = self._error("the weights became non-finite", *self._position(trainer))
        if checked and trainer is not None and trainer.world_size > 1:
            elsewhere = trainer.strategy.reduce_boolean_decision(problem is not None, all=False)
            if elsewhere and problem is None:
                what = "the training loss or the weights of another process became non-finite"
                problem = self._error(what, *self._position(trainer))
        if problem is not None:
            raise problem

    def _loss_problem(self) -> DivergenceError | None:
        """The first non-finite buffered loss, as an error; empties the buffer."""
        if not self._steps or self._losses is None:
            return None
        values = self._losses[: len(self._steps)].tolist()
        steps, self._steps = self._steps, []
        for value, (epoch, step, lr) in zip(values, steps, strict=True):
            if not math.isfinite(value):
                return self._error(f"the training loss became {value}", epoch, step, lr)
        return None

    @staticmethod
    def _position(trainer: L.Trainer) -> tuple[int, int, float | None]:
        """(epoch, step, learning rate) of the last training step: ``global_step`` already counts its
        optimizer update, so the step the loss belongs to is one less."""
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        return trainer.current_epoch, trainer.global_step - 1, lr

    @staticmethod
    def _error(what: str, epoch: int, step: int, lr: float | None) -> DivergenceError:
        lr_text = f"{lr:g}" if lr is not None else "unknown"
        return DivergenceError(
            f"training diverged: {what} at epoch {epoch}, step {step} (learning rate {lr_text}); stopped without "
            "saving these weights. Lower optim.lr, or clip gradients "
            "(trainer.gradient_clip_val=1.0)",
            epoch=epoch,
            step=step,
            lr=lr,
        )
