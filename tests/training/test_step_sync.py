"""No host-device synchronization per training step in the package's Lightning loop.

On a GPU every read of a tensor's value on the host waits for the device to finish; a loop that
reads one per step cannot queue the next step ahead. Counted here on the CPU, at the Python level.
"""

from __future__ import annotations

from collections import Counter

import lightning as L
import pytest
import torch

from alexnet_study.training.run import run
from tests.conftest import TINY

# Reading a tensor's value on the host (.item(), float(), bool(), .tolist(), ...) waits for the GPU.
READBACKS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu")


class _Readbacks(L.Callback):
    """Counts host read-backs of tensor values during steady-state training steps: from the start of
    an epoch's second batch to the start of its last (the epoch's first and last batch synchronize
    on purpose, for timing), in every epoch after the first."""

    def __init__(self) -> None:
        self.active = False
        self.seen: Counter[str] = Counter()
        self.steps = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        last = trainer.num_training_batches - 1
        if trainer.current_epoch >= 1 and batch_idx == 1:
            self.active = True
        elif batch_idx == last and self.active:
            self.active = False
            self.steps += last - 1


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_the_training_loop_reads_nothing_back_per_step(make_cfg, monkeypatch, loss: str) -> None:
    """Metrics, the loss and the learning rate stay on the device; the progress bar (refreshed every
    few steps) and the loggers (every log_every_n_steps) find nothing to read back in between."""
    spy = _Readbacks()
    for name in READBACKS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if spy.active:
                spy.seen[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    from alexnet_study.training import run as train

    build_trainer = train.build_trainer
    monkeypatch.setattr(train, "build_trainer", lambda cfg, extra=(): build_trainer(cfg, [*extra, spy]))
    with_progress_bar = [o for o in TINY if o not in ("~callbacks.progress_bar", "trainer.enable_progress_bar=false")]
    # The divergence guard reads its loss buffer every check_every_n_steps (5) by design: not per
    # step, but inside this window, so it is moved out of it here (tests/training/test_reliability.py covers it).
    cfg = make_cfg(
        *with_progress_bar, f"loss={loss}", "trainer.log_every_n_steps=1000",
        "callbacks.divergence_guard.check_every_n_steps=1000",
    )  # fmt: skip
    assert run(cfg)["status"] == "ok"
    assert spy.steps >= 8 and not spy.seen, spy.seen
