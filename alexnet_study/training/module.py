"""``ImageClassifier``: the LightningModule every study trains (loss, optimizer, schedule, metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from alexnet_study.errors import ConfigError, check_int, check_number
from alexnet_study.models.freeze import keep_frozen_batchnorm_in_eval, lr_groups, scale_group_lrs
from alexnet_study.training.losses import check_loss

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
Rule = Callable[[str, Any], Any]


def _positive(key: str, value: Any) -> Any:
    return check_number(key, value, 0, inclusive=False)


def _non_negative(key: str, value: Any) -> Any:
    return check_number(key, value, 0)


def _fraction(key: str, value: Any) -> Any:
    return check_number(key, value, 0, below=1)


def _open_fraction(key: str, value: Any) -> Any:
    return check_number(key, value, 0, inclusive=False, below=1)


def _milestones(key: str, value: Any) -> Any:
    return [check_int(f"{key}[{i}]", v, 1) for i, v in enumerate(value)]


# The hyperparameters of conf/optim and conf/sched, by keyword: torch accepts some of these bad values
# silently (lr=inf, gamma=-1) and fails late on others (step_size=0 divides by zero at the first step).
OPTIMIZER_RULES: dict[str, Rule] = {
    "lr": _positive,
    "weight_decay": _non_negative,
    "momentum": _fraction,
    "alpha": _open_fraction,  # RMSprop's smoothing
    "rho": _open_fraction,  # Adadelta's
    "eps": _positive,
}
SCHEDULER_RULES: dict[str, Rule] = {
    "step_size": lambda key, value: check_int(key, value, 1),
    "gamma": _positive,
    "milestones": _milestones,
    "T_max": lambda key, value: check_int(key, value, 1),
    "eta_min": _non_negative,
    "max_lr": _positive,
    "pct_start": _open_fraction,
    "div_factor": _positive,
    "final_div_factor": _positive,
    "factor": _open_fraction,  # ReduceLROnPlateau's
    "patience": lambda key, value: check_int(key, value, 0),
}
SCHEDULER_INTERVALS = ("epoch", "step")


def check_hyperparameters(prefix: str, keywords: Mapping[str, Any], rules: dict[str, Rule]) -> None:
    """Each hyperparameter of an optimizer or scheduler (a ``_partial_``'s keywords, or its config)
    by its rule; ``prefix`` is the config key they come from (``optim``, ``sched.scheduler``)."""
    for name, value in keywords.items():
        if name in rules and value is not None:
            rules[name](f"{prefix}.{name}", value)


class ImageClassifier(L.LightningModule):
    """Wraps a network for classification.

    Args:
        net: the network (any ``nn.Module`` mapping images to logits).
        loss: a module ``loss(logits, target_indices)`` (``conf/loss``).
        optimizer: a partial taking the trainable parameters (``conf/optim``, ``_partial_: true``).
        scheduler: a partial taking the optimizer, or ``None`` (``conf/sched``). A partial whose
            ``total_steps`` is ``None`` (OneCycleLR) gets the trainer's total step count.
        scheduler_interval: ``epoch`` or ``step``; ``scheduler_monitor``: the metric a
            ReduceLROnPlateau watches.
        num_classes: for the metrics; top-5 accuracy is logged when there are at least 5.
        compile: ``torch.compile`` the network in place (its ``state_dict`` keys do not change).
        channels_last: run convolutions in NHWC memory layout (faster with mixed precision on GPU).
        backbone_lr_scale: train every layer of ``net`` but its last at ``lr * backbone_lr_scale``
            (two optimizer groups: ``head`` first, then ``backbone``); ``None``: one lr for all.
        hparams: plain values to record with checkpoints and loggers (the resolved config).

    Metrics stay on the device until an epoch ends: nothing in the step forces a host sync.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str | None = None,
        compile: bool = False,
        channels_last: bool = False,
        hparams: Mapping[str, Any] | None = None,
        backbone_lr_scale: float | None = None,
    ) -> None:
        super().__init__()
        check_hyperparameters("optim", getattr(optimizer, "keywords", {}), OPTIMIZER_RULES)
        check_hyperparameters("sched.scheduler", getattr(scheduler, "keywords", {}), SCHEDULER_RULES)
        if scheduler_interval not in SCHEDULER_INTERVALS:
            raise ConfigError(f"sched.interval={scheduler_interval!r}: accepted: {', '.join(SCHEDULER_INTERVALS)}")
        check_loss(loss)
        if hparams:
            self.save_hyperparameters(dict(hparams), logger=False)
        self.net = net
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.compile_net = compile
        self.channels_last = channels_last
        self.backbone_lr_scale = backbone_lr_scale

        # Training metrics skip input checks: torchmetrics' NaN and class-range checks read values
        # back from the device every step (NaN losses are the divergence guard's job).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_loss = MeanMetric()
        self.val_acc_best = MaxMetric()
        # Saved in checkpoints, so a run resumed mid-epoch reports the same epoch metrics and best.
        for metric in (self.train_loss, self.train_acc, self.val_acc_best):
            metric.persistent(True)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_top5 = MulticlassAccuracy(num_classes, top_k=5, average="micro") if num_classes >= 5 else None
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_loss = MeanMetric()
        self.test_report: dict[str, Any] = {}

    def configure_model(self) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not getattr(self, "_compiled", False):
            self.net.compile()
            self._compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def compute_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, logits, target) for a transformed batch."""
        images, target = batch
        logits = self(images)
        return self.loss(logits, target), logits, target

    # -- training ----------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Lightning resets logged metrics after the epoch-end hooks, but an epoch-end checkpoint is
        # written before that: a run resumed from one must not carry the old epoch into the new.
        # (Not called when a run resumes mid-epoch, whose partial sums are the ones to keep.)
        self.train_loss.reset()
        self.train_acc.reset()
        # Frozen BatchNorm layers keep their running statistics (Lightning restores per-module modes after validation).
        keep_frozen_batchnorm_in_eval(self.net)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, target = self.compute_loss(batch)
        # full_like, not a Python int: that would be a host-to-device copy (a sync) every step.
        self.train_loss.update(loss.detach(), weight=torch.full_like(loss, target.shape[0]))
        self.train_acc.update(logits, target)
        # Not prog_bar: Lightning converts every progress-bar value logged on_step to a Python
        # number after each batch (.item(), a host-device sync per step). The loss still goes to
        # the loggers (train/loss_step every log_every_n_steps, train/loss_epoch each epoch).
        self.log("train/loss_step", loss, on_step=True, on_epoch=False)
        self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        # A CPU tensor: logging a Python float would copy it to the GPU, a host sync every step.
        self.log("lr", torch.tensor(self.optimizers().param_groups[0]["lr"]), on_step=True, on_epoch=False)
        return loss

    # -- validation --------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, target = self.compute_loss(batch)
        self.val_loss.update(loss, weight=target.shape[0])
        self.val_acc.update(logits, target)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_acc.compute())
        # Both computes reduce over all DDP processes, so the value is already equal on each; sync_dist
        # (a mean of equal values) only spares the warning Lightning gives for unsynced epoch values.
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    # -- test --------------------------------------------------------------------------------
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        loss, logits, target = self.compute_loss(batch)
        self.test_loss.update(loss, weight=target.shape[0])
        self.test_acc.update(logits, target)
        self.test_confusion.update(logits, target)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)
        if self.test_top5 is not None:
            self.test_top5.update(logits, target)
            self.log("test/acc_top5", self.test_top5, on_step=False, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        confusion = self.test_confusion.compute()
        self.test_report = {"per_class_acc": per_class_accuracy(confusion), "confusion_matrix": confusion.tolist()}
        self.test_confusion.reset()

    # -- optimization ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(lr_groups(self, self.net, self.backbone_lr_scale))
        scale_group_lrs(optimizer)
        if self.scheduler_factory is None:
            return optimizer
        extra: dict[str, Any] = {}
        keywords = getattr(self.scheduler_factory, "keywords", {})
        if keywords.get("total_steps", 0) is None:
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        extra.update(one_cycle_warmup(keywords, extra.get("total_steps", keywords.get("total_steps"))))
        if len(optimizer.param_groups) > 1 and isinstance(keywords.get("max_lr"), int | float):
            # OneCycleLR would give every group the same peak: keep each group's scale.
            extra["max_lr"] = [keywords["max_lr"] * group.get("lr_scale", 1.0) for group in optimizer.param_groups]
        scheduler = self.scheduler_factory(optimizer, **extra)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.scheduler_interval}
        if self.scheduler_monitor:
            config["monitor"] = self.scheduler_monitor
        return {"optimizer": optimizer, "lr_scheduler": config}


def one_cycle_warmup(keywords: Mapping[str, Any], total_steps: Any) -> dict[str, float]:
    """A ``pct_start`` OneCycleLR can run with ``total_steps``: its warm-up ends at step
    ``pct_start * total_steps - 1``, and where that is exactly 0 (pct_start 0.2 of 5 steps) it divides by
    the warm-up's zero length. Two steps of warm-up then: from the initial lr at step 0 to the peak at step 1."""
    pct_start = keywords.get("pct_start")
    if isinstance(pct_start, int | float) and isinstance(total_steps, int) and pct_start * total_steps - 1 == 0:
        return {"pct_start": 2 / total_steps}
    return {}


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Each class's test accuracy from a (true x predicted) confusion matrix; ``None`` for a class with
    no test images (torchmetrics would report 0.0, indistinguishable from a class never recognised)."""
    support = confusion.sum(dim=1)
    correct = confusion.diagonal()
    return [int(c) / int(n) if n else None for c, n in zip(correct.tolist(), support.tolist(), strict=True)]
