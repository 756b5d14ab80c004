"""Loss functions beyond torch's own; ``conf/loss/*.yaml`` picks one (``ce`` is torch's CrossEntropyLoss)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from alexnet_study.errors import check_number


def check_loss(loss: nn.Module) -> None:
    """A loss's ``label_smoothing`` (torch's CrossEntropyLoss and ours): in [0, 1)."""
    smoothing = getattr(loss, "label_smoothing", None)
    if smoothing is not None:
        check_number("loss.label_smoothing", smoothing, 0, below=1)


class OneHotBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy of independent sigmoid outputs against one-hot targets.

    The ``bce`` arm of the loss study: each class is its own yes/no problem, unlike softmax
    cross-entropy. Targets are class indices; ``label_smoothing`` moves each one-hot target
    towards ``1 / num_classes`` as torch's CrossEntropyLoss does.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        check_loss(self)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        one_hot = F.one_hot(target, num_classes).to(logits.dtype)
        if self.label_smoothing:
            one_hot = one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        return F.binary_cross_entropy_with_logits(logits, one_hot)
