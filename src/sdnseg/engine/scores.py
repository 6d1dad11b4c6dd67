"""The numbers every evaluation stage of :class:`~sdnseg.engine.SegmentationModule` logs.

:class:`SegmentationScores` groups mIoU/mAcc/aAcc (:class:`~sdnseg.metrics.SegmentationMetrics`)
and boundary F at each tolerance under both absent-class conventions (``BF@1px`` counts a class
absent from both maps as F=1, ``BF@1px_skip`` leaves it out; :class:`~sdnseg.metrics.BoundaryFScore`),
the set a training run can afford at every validation. The full suite (Boundary IoU, trimap
curves) is :class:`~sdnseg.metrics.MetricSuite`, run by ``sdnseg evaluate``.

A SegFix network is scored by :class:`~sdnseg.metrics.SegFixScores` instead; both share
``update``/``compute``/``reset``, so the module logs either the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sdnseg.metrics import BoundaryFScore, SegmentationMetrics

__all__ = ["SegmentationScores"]

_SCALARS = ("mIoU", "mAcc", "aAcc")


class SegmentationScores(nn.Module):
    """mIoU/mAcc/aAcc and boundary F (both conventions) of label maps, accumulated over batches.

    Args:
        num_classes: C.
        ignore_index: unlabelled pixels in the masks.
        tolerances: boundary F tolerances in pixels (the paper's 1 px and 3 px).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int,
        tolerances: Sequence[float] = (1, 3),
    ) -> None:
        super().__init__()
        args = {"num_classes": num_classes, "ignore_index": ignore_index}
        self.seg = SegmentationMetrics(**args)
        self.bf = BoundaryFScore(**args, tolerances=tuple(tolerances), absent="one")
        self.bf_skip = BoundaryFScore(**args, tolerances=tuple(tolerances), absent="skip")

    def update(self, preds: torch.Tensor, masks: torch.Tensor) -> None:
        """Add a batch: predicted and target label maps, both (N, H, W)."""
        for metric in (self.seg, self.bf, self.bf_skip):
            metric.update(preds, masks)

    def compute(self, classes: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``mIoU``, ``mAcc``, ``aAcc``, ``BF@<t>``, ``BF@<t>_skip``; given the class names,
        also ``IoU/<class>``."""
        seg, bf, bf_skip = self.seg.compute(), self.bf.compute(), self.bf_skip.compute()
        values = {name: seg[name] for name in _SCALARS}
        for name in self.bf.names:
            values[f"BF@{name}"] = bf[f"BF@{name}"]
            values[f"BF@{name}_skip"] = bf_skip[f"BF@{name}"]
        if classes is not None:
            values.update({f"IoU/{c}": iou for c, iou in zip(classes, seg["IoU"], strict=True)})
        return values

    def reset(self) -> None:
        for metric in (self.seg, self.bf, self.bf_skip):
            metric.reset()
