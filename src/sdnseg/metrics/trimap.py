"""Trimap IoU: mIoU restricted to a band around the target's class boundaries, per band width.

The trimap experiment of DeepLab (Chen et al., 2016; after Kohli et al., 2009) plots mIoU
against the width of the band in which pixels are scored: a method that sharpens boundaries gains
most at small widths. One pass over the data fills a confusion matrix per width (see
:func:`sdnseg.metrics.bands.trimap_confusion_matrices`); scores follow
:func:`sdnseg.metrics.functional.segmentation_scores` (mmsegmentation's NaN rules).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from sdnseg.metrics import functional as MF
from sdnseg.metrics.bands import check_widths, trimap_confusion_matrices

__all__ = ["TrimapIoU"]


class TrimapIoU(Metric):
    """mIoU of the pixels within each width of a target class boundary.

    ``compute()`` returns ``"trimap_mIoU"`` (len(widths),) and ``"trimap_IoU"`` (len(widths), C),
    float32 fractions; ``widths`` holds the widths in the order given.

    Args:
        num_classes: C.
        widths: half-widths of the band in pixels (chessboard distance to the boundary).
        ignore_index: the target's void label (its edges are boundaries, its pixels never
            scored), or None.
        **kwargs: passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (1, 2, 4, 8, 16, 32),
        ignore_index: int | None = 255,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        MF.check_num_classes(num_classes)
        MF.check_ignore_index(ignore_index, num_classes)
        check_widths(widths)
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.ignore_index = ignore_index
        shape = (len(self.widths), num_classes, num_classes)
        self.add_state("confmat", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.confmat += trimap_confusion_matrices(
            preds, target, self.num_classes, self.widths, self.ignore_index
        )

    def compute(self) -> dict[str, torch.Tensor]:
        scores = [MF.segmentation_scores(m) for m in self.confmat]
        return {
            "trimap_mIoU": torch.stack([s["mIoU"] for s in scores]),
            "trimap_IoU": torch.stack([s["IoU"] for s in scores]),
        }
