"""What the mistake and confusion views need from a pass over the test images, gathered on the device.

:class:`Evaluation` takes batches of (model inputs, logits, labels) and keeps a confusion matrix
and the most confidently wrong images so far, all on the batches' device with no host sync per
batch: it can ride along the run's own test loop (the callback) or a pass of its own (inspect).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Mistake:
    """A wrongly classified image (the model's input, normalized) and what the model made of it."""

    image: torch.Tensor
    label: int
    predicted: int
    confidence: float


class Evaluation:
    """Confusion counts (true x predicted) and the ``keep`` most confident mistakes over the batches seen."""

    def __init__(self, num_classes: int, keep: int = 16) -> None:
        self.num_classes, self.keep = num_classes, keep
        self.images_seen = 0
        self.confusion: torch.Tensor | None = None
        # The running top ``keep`` (by confidence; -1 for a correct one, dropped at the end).
        self._scores: torch.Tensor | None = None
        self._images = self._labels = self._predicted = torch.empty(0)

    def update(self, inputs: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        probabilities = logits.detach().float().softmax(1)
        confidence, predicted = probabilities.max(1)
        labels = labels.to(predicted.device)
        counts = torch.bincount(labels * self.num_classes + predicted, minlength=self.num_classes**2)
        counts = counts.view(self.num_classes, self.num_classes)
        self.confusion = counts if self.confusion is None else self.confusion + counts
        self.images_seen += int(labels.shape[0])  # host metadata: no sync
        if self.keep > 0:
            self._keep(confidence.masked_fill(predicted == labels, -1.0), inputs.detach(), labels, predicted)

    def _keep(self, scores: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, predicted: torch.Tensor) -> None:
        """The top ``keep`` of what is kept so far and these candidates, by score."""
        if self._scores is not None:
            scores = torch.cat([self._scores, scores.to(self._scores.device)])
            images = torch.cat([self._images, images.to(self._images.device, self._images.dtype)])
            labels = torch.cat([self._labels, labels.to(self._labels.device)])
            predicted = torch.cat([self._predicted, predicted.to(self._predicted.device)])
        top = scores.topk(min(self.keep, scores.shape[0])).indices
        self._scores, self._images = scores[top], images[top]
        self._labels, self._predicted = labels[top], predicted[top]

    def state(self) -> dict[str, Any]:
        """Host copies of the counts and kept mistakes, to send to another process (:meth:`merge`)."""
        kept = None
        if self._scores is not None:
            kept = [tensor.cpu() for tensor in (self._scores, self._images, self._labels, self._predicted)]
        confusion = None if self.confusion is None else self.confusion.cpu()
        return {"images_seen": self.images_seen, "confusion": confusion, "kept": kept}

    def merge(self, state: dict[str, Any]) -> None:
        """Add another evaluation's :meth:`state` (another process's share of the test images)."""
        self.images_seen += state["images_seen"]
        confusion = state["confusion"]
        if confusion is not None:
            mine = self.confusion
            self.confusion = confusion if mine is None else mine + confusion.to(mine.device)
        if state["kept"] is not None and self.keep > 0:
            self._keep(*state["kept"])

    def mistakes(self) -> list[Mistake]:
        """The most confident mistakes, most confident first (host copies)."""
        if self._scores is None:
            return []
        scores = self._scores.cpu().tolist()
        images, labels, predicted = self._images.cpu(), self._labels.cpu().tolist(), self._predicted.cpu().tolist()
        return [Mistake(images[i], labels[i], predicted[i], scores[i]) for i in range(len(scores)) if scores[i] >= 0.0]

    def confusion_matrix(self) -> list[list[int]]:
        """Counts of (true class, predicted class) as nested lists."""
        if self.confusion is None:
            return [[0] * self.num_classes for _ in range(self.num_classes)]
        return self.confusion.cpu().tolist()
