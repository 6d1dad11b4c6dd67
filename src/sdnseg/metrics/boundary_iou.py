"""Boundary IoU for semantic segmentation (Cheng et al., CVPR 2021) as a torchmetrics ``Metric``.

The Boundary IoU API scores instance and panoptic masks; here every class of a semantic label map
is one mask: per class ``c`` the inner boundary bands of ``pred == c`` and ``target == c`` (width
``d``, see :mod:`sdnseg.metrics.bands`), their intersection and union summed over the dataset, and
``BIoU_c = I_c / U_c``. Summing before dividing weighs images by their boundary length, as mIoU
weighs them by area, and makes the score exact under DDP (``dist_reduce_fx="sum"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from sdnseg.metrics import functional as MF
from sdnseg.metrics.bands import band_radius, boundary_iou_counts

__all__ = ["BoundaryIoU"]


class BoundaryIoU(Metric):
    """Per-class Boundary IoU and its mean over classes.

    ``compute()`` returns ``"mBIoU"`` (0-d float32, mean over the classes with a non-empty
    union) and ``"BIoU"`` ((C,) float32, NaN for a class whose bands were empty in every image).

    Args:
        num_classes: C.
        dilation: band width: whole pixels (``>= 1``) or a fraction of each image's diagonal
            (``< 1``; the paper's default 0.02, i.e. 46 px at 1024×2048).
        ignore_index: the target's void label: background for every class in both maps (as
            :class:`~sdnseg.metrics.BoundaryFScore` treats it), or None.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Shape:
        ``update(preds, target)``: preds class ids (N, H, W) or scores (N, C, H, W); target class
        ids (N, H, W).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    intersection: torch.Tensor
    union: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        dilation: float = 0.02,
        ignore_index: int | None = 255,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        MF.check_num_classes(num_classes)
        MF.check_ignore_index(ignore_index, num_classes)
        band_radius(dilation, 1, 1)  # validates the value
        self.num_classes = num_classes
        self.dilation = dilation
        self.ignore_index = ignore_index
        for name in ("intersection", "union"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the batch's band intersections and unions, per class."""
        inter, union = boundary_iou_counts(
            preds, target, self.num_classes, self.dilation, self.ignore_index
        )
        self.intersection += inter
        self.union += union

    def compute(self) -> dict[str, torch.Tensor]:
        biou = MF.mean_or_nan(self.intersection.double(), self.union)
        return {"mBIoU": torch.nanmean(biou).float(), "BIoU": biou.float()}
