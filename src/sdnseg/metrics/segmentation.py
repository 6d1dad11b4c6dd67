"""mIoU, mAcc and aAcc as a torchmetrics ``Metric`` over a summed confusion matrix.

Definitions follow mmsegmentation (``mmseg/evaluation/metrics/iou_metric.py``): per-class IoU is
NaN for a class absent from both prediction and target, per-class accuracy NaN for a class absent
from the target, and NaNs are left out of the means. The state is one (C, C) count matrix with
``dist_reduce_fx="sum"``, so DDP synchronisation is exact.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from sdnseg.metrics import functional as MF


class SegmentationMetrics(Metric):
    """mIoU / mAcc / aAcc and per-class IoU / Acc from an accumulated confusion matrix.

    ``compute()`` returns ``{"mIoU", "mAcc", "aAcc"}`` as 0-d float32 tensors and
    ``{"IoU", "Acc"}`` as (C,) float32 tensors, all fractions in [0, 1] (NaN per the rules above;
    a mean over no class is NaN).

    Args:
        num_classes: C.
        ignore_index: target value left out of every count, or None.
        **kwargs: passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Shape:
        ``update(preds, target)``: preds class ids (N, H, W) or scores (N, C, H, W) (argmax over
        dim 1); target class ids (N, H, W).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: torch.Tensor

    def __init__(self, num_classes: int, ignore_index: int | None = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        MF.check_num_classes(num_classes)
        MF.check_ignore_index(ignore_index, num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the batch's pixels to the confusion matrix (rows = target, columns = prediction)."""
        self.confmat += MF.confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, torch.Tensor]:
        """Scores of all pixels seen so far (across processes under DDP)."""
        return MF.segmentation_scores(self.confmat)
