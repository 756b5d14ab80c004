"""ImageClassifier: losses, optimizers and schedules from their config groups; metrics."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torch.nn import functional as F

from alexnet_study.training.callbacks.recorder import EpochRecorder
from alexnet_study.training.losses import OneHotBCEWithLogitsLoss
from alexnet_study.training.module import ImageClassifier, per_class_accuracy
from alexnet_study.training.run import build_module, build_trainer

OPTIMIZERS = {
    "sgd": ["optim=sgd", "optim.lr=0.05"],
    "sgd_plain": ["optim=sgd", "optim.momentum=0.0", "optim.lr=0.3"],
    "sgd_nesterov": ["optim=sgd", "optim.nesterov=true", "optim.lr=0.05"],
    "adam": ["optim=adam"],
    "adamw": ["optim=adamw"],
    "adadelta": ["optim=adadelta"],
    "rmsprop": ["optim=rmsprop"],
}


def fixed_batch(num_classes: int = 10, size: int = 16, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise plus a per-class pattern: learnable, so every optimizer can lower the loss on it."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % num_classes
    patterns = torch.randn(num_classes, 3, size, size, generator=generator)
    return patterns[labels] + 0.5 * torch.randn(n, 3, size, size, generator=generator), labels


@pytest.mark.parametrize("loss", ["ce", "bce"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_training_steps_lower_the_loss_on_a_fixed_batch(make_cfg, loss: str, optimizer: str) -> None:
    cfg = make_cfg(f"loss={loss}", *OPTIMIZERS[optimizer], "sched=none", tiny=True)
    module = build_module(cfg)
    opt = module.configure_optimizers()
    assert type(opt).__name__.lower() == cfg.optim._target_.rsplit(".", 1)[1].lower()
    batch = fixed_batch()
    module.train()
    with torch.no_grad():
        before = module.compute_loss(batch)[0].item()
    for _ in range(20):
        opt.zero_grad()
        module.compute_loss(batch)[0].backward()
        opt.step()
    with torch.no_grad():
        after = module.compute_loss(batch)[0].item()
    assert after < 0.9 * before, f"{loss}/{optimizer}: loss {before:.4f} -> {after:.4f}"


def test_bce_is_binary_cross_entropy_against_one_hot_targets() -> None:
    logits = torch.randn(4, 5)
    target = torch.tensor([0, 3, 4, 1])
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(target, 5).float())
    torch.testing.assert_close(OneHotBCEWithLogitsLoss()(logits, target), expected)
    smoothed = F.one_hot(target, 5).float() * 0.9 + 0.1 / 5
    torch.testing.assert_close(
        OneHotBCEWithLogitsLoss(label_smoothing=0.1)(logits, target),
        F.binary_cross_entropy_with_logits(logits, smoothed),
    )


def test_label_smoothing_reaches_the_loss(make_cfg) -> None:
    module = build_module(make_cfg("loss.label_smoothing=0.2", tiny=True))
    assert module.loss.label_smoothing == pytest.approx(0.2)


def test_optimizer_gets_only_trainable_parameters(make_cfg) -> None:
    module = build_module(make_cfg("sched=none", tiny=True))
    for p in module.net.features.parameters():
        p.requires_grad_(False)
    opt = module.configure_optimizers()
    in_optimizer = {id(p) for group in opt.param_groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in module.net.classifier.parameters()}


def _fit(make_cfg, *overrides: str) -> tuple[ImageClassifier, L.Trainer, EpochRecorder]:
    cfg = make_cfg(*overrides, tiny=True)
    module = build_module(cfg)
    recorder = EpochRecorder()
    trainer = build_trainer(cfg, [recorder])
    trainer.fit(module, datamodule=instantiate(cfg.data))
    return module, trainer, recorder


@pytest.mark.parametrize(
    ("sched", "overrides", "expected"),
    [
        ("none", [], lambda lr, steps: lr),
        ("step", ["sched.scheduler.step_size=1", "sched.scheduler.gamma=0.5"], lambda lr, steps: lr * 0.25),
        ("multistep", ["sched.scheduler.milestones=[1]", "sched.scheduler.gamma=0.1"], lambda lr, steps: lr * 0.1),
        ("cosine", [], lambda lr, steps: 0.0),
        ("plateau", [], None),
        ("onecycle", [], None),
    ],
)
def test_every_schedule_runs_and_moves_the_learning_rate(make_cfg, sched, overrides, expected) -> None:
    _, trainer, _ = _fit(make_cfg, f"sched={sched}", *overrides, "optim=sgd", "optim.lr=0.1")
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    if expected is not None:
        assert lr == pytest.approx(expected(0.1, trainer.global_step), abs=1e-9)
    if sched == "onecycle":
        scheduler = trainer.lr_scheduler_configs[0]
        assert scheduler.interval == "step"
        assert scheduler.scheduler.total_steps == trainer.estimated_stepping_batches
        assert lr < 0.1 / 25  # annealed far below the peak by the last step
    if sched == "plateau":
        assert trainer.lr_scheduler_configs[0].monitor == "val/loss"


@pytest.mark.parametrize("steps", [4, 5, 6])
def test_one_cycle_runs_however_few_steps_a_run_has(make_cfg, steps: int) -> None:
    # pct_start 0.2 of 5 steps is a warm-up of zero length, which OneCycleLR divides by.
    _, trainer, _ = _fit(
        make_cfg, "sched=onecycle", "optim=sgd", "optim.lr=0.1", "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={steps}", "+trainer.limit_val_batches=1",
    )  # fmt: skip
    assert trainer.global_step == steps
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == steps


def test_fit_logs_the_documented_metrics(make_cfg) -> None:
    _, trainer, recorder = _fit(make_cfg, "sched=step")
    expected = {"train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr"}
    expected |= {"time/epoch_s", "time/train_s", "time/images_per_s"}
    assert expected <= set(trainer.callback_metrics)
    assert [r["epoch"] for r in recorder.history] == [0, 1]
    assert all(r["images"] == 320 and r["images_per_s"] > 0 for r in recorder.history)


def test_val_acc_best_is_the_maximum_over_epochs_not_the_sanity_check(make_cfg) -> None:
    module, _, recorder = _fit(make_cfg, "trainer.max_epochs=3", "trainer.num_sanity_val_steps=2")
    per_epoch = [r["val/acc"] for r in recorder.history]
    assert len(per_epoch) == 3
    assert module.val_acc_best.compute().item() == pytest.approx(max(per_epoch))


@pytest.mark.parametrize(("num_classes", "has_top5"), [(10, True), (4, False)])
def test_test_metrics_top5_per_class_and_confusion(make_cfg, num_classes: int, has_top5: bool) -> None:
    cfg = make_cfg(f"data.num_classes={num_classes}", tiny=True)
    module = build_module(cfg)
    trainer = build_trainer(cfg)
    trainer.test(module, datamodule=instantiate(cfg.data))
    assert ("test/acc_top5" in trainer.callback_metrics) is has_top5
    report = module.test_report
    assert len(report["per_class_acc"]) == num_classes
    confusion = torch.tensor(report["confusion_matrix"])
    assert confusion.shape == (num_classes, num_classes)
    assert confusion.sum().item() == cfg.data.test_size
    accuracy = confusion.diag().sum().item() / confusion.sum().item()
    assert trainer.callback_metrics["test/acc"].item() == pytest.approx(accuracy)


def test_per_class_accuracy_is_none_for_a_class_without_test_images() -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    assert per_class_accuracy(confusion) == [0.75, None, 0.5]


def test_schedule_partial_without_total_steps_is_left_alone(make_cfg) -> None:
    cfg = make_cfg("sched=step", tiny=True)
    module = build_module(cfg)
    assert isinstance(module.scheduler_factory, functools.partial)
    assert "total_steps" not in module.scheduler_factory.keywords
