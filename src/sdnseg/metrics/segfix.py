"""How well a SegFix network predicts its targets, as a torchmetrics ``Metric``.

Pixel counts over the batches: the boundary map thresholded at ``threshold`` against the
ground-truth boundary (precision, recall and F over labelled pixels), and the arg-max direction
against the ground-truth direction on the ground-truth boundary pixels (accuracy). These are
what refinement depends on: a pixel is fixed where SegFix calls it boundary and points it the
right way. All states are sums (``dist_reduce_fx="sum"``), so DDP synchronisation is exact.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric

__all__ = ["SegFixScores"]

NAMES = ("boundary_F", "boundary_precision", "boundary_recall", "direction_acc")


class SegFixScores(Metric):
    """Boundary precision / recall / F and direction accuracy of a SegFix network.

    ``compute()`` returns 0-d float32 tensors under :data:`NAMES`; a ratio with nothing to count
    (no predicted or no true boundary pixel) is 0.

    Args:
        threshold: boundary probability above which a pixel is called boundary.
        ignore_index: the unlabelled value of the target maps.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Shape:
        update: boundary logits (N, 1, H, W), direction logits (N, D, H, W), target boundary
        (N, H, W) {0, 1, ignore_index}, target direction (N, H, W) {0..D-1, ignore_index}
    """

    full_state_update = False

    def __init__(self, threshold: float = 0.5, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        self.logit_threshold = math.log(threshold / (1 - threshold))
        self.ignore_index = ignore_index
        for name in ("true_positives", "false_positives", "false_negatives", "correct", "counted"):
            self.add_state(name, default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        boundary_logits: torch.Tensor,
        direction_logits: torch.Tensor,
        boundary: torch.Tensor,
        direction: torch.Tensor,
    ) -> None:
        if boundary_logits.dim() != 4 or boundary_logits.shape[1] != 1:
            raise ValueError(
                f"boundary logits must be (N, 1, H, W), got {tuple(boundary_logits.shape)}"
            )
        shape = torch.Size((boundary_logits.shape[0], *boundary_logits.shape[2:]))
        direction_shape = torch.Size((direction_logits.shape[0], *direction_logits.shape[2:]))
        if direction_logits.dim() != 4 or {direction_shape, boundary.shape, direction.shape} != {
            shape
        }:
            raise ValueError(
                f"SegFixScores: logits {tuple(boundary_logits.shape)} and "
                f"{tuple(direction_logits.shape)}, targets {tuple(boundary.shape)} and "
                f"{tuple(direction.shape)} do not share (N, H, W)"
            )
        labelled = boundary != self.ignore_index
        predicted = (boundary_logits[:, 0] > self.logit_threshold) & labelled
        true = (boundary == 1) & labelled
        self.true_positives += (predicted & true).sum()
        self.false_positives += (predicted & ~true).sum()
        self.false_negatives += (~predicted & true).sum()
        scored = true & (direction != self.ignore_index)
        self.correct += ((direction_logits.argmax(dim=1) == direction) & scored).sum()
        self.counted += scored.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a / b).float() if b > 0 else torch.zeros((), device=a.device)

        tp = self.true_positives
        precision = ratio(tp, tp + self.false_positives)
        recall = ratio(tp, tp + self.false_negatives)
        f = ratio(2 * tp, 2 * tp + self.false_positives + self.false_negatives)
        accuracy = ratio(self.correct, self.counted)
        return dict(zip(NAMES, (f, precision, recall, accuracy), strict=True))
