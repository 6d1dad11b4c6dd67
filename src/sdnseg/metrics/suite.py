"""Every segmentation metric of sdnseg in one object: the headline numbers and per-class tables.

:class:`MetricSuite` holds mIoU/mAcc/aAcc (:class:`SegmentationMetrics`), boundary F at each
tolerance under both absent-class conventions (:class:`BoundaryFScore`, ``absent="one"`` and
``"skip"``), Boundary IoU and the trimap IoU curve, updates them together and reports them as
plain Python numbers (fractions in [0, 1], NaN where a score is undefined). It is an
``nn.Module``, so ``.to(device)`` moves every state, and each part stays a torchmetrics
``Metric`` with sum states, exact under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from sdnseg.metrics.boundary import BoundaryFScore
from sdnseg.metrics.boundary_iou import BoundaryIoU
from sdnseg.metrics.segmentation import SegmentationMetrics
from sdnseg.metrics.trimap import TrimapIoU

__all__ = ["MetricSuite", "SuiteResult"]


@dataclass
class SuiteResult:
    """What :meth:`MetricSuite.compute` returns.

    Attributes:
        headline: ``mIoU``, ``mAcc``, ``aAcc``, ``BF@<t>``, ``BF@<t>_skip`` per tolerance,
            ``mBIoU``, and ``trimap_mIoU@<w>px`` per width.
        per_class: one row per class: ``IoU``, ``Acc``, ``F@<t>``, ``P@<t>``, ``R@<t>`` (absent
            pairs counted as F = 1), ``F@<t>_skip``, ``BIoU``.
        trimap: ``{width: mIoU}``.
        confusion: (C, C) pixel counts, rows = target, columns = prediction.
    """

    headline: dict[str, float]
    per_class: dict[str, dict[str, float]]
    trimap: dict[int, float]
    confusion: list[list[int]] = field(repr=False)

    def to_dict(self) -> dict:
        """JSON-ready (NaN stays NaN; ``json.dumps`` writes it as ``NaN``)."""
        return {
            "headline": self.headline,
            "per_class": self.per_class,
            "trimap": {str(w): v for w, v in self.trimap.items()},
            "confusion": self.confusion,
        }


class MetricSuite(nn.Module):
    """mIoU family, boundary F (both conventions), Boundary IoU and trimap IoU together.

    Args:
        num_classes: C.
        classes: class names for the per-class table (default ``"0"``, ``"1"``, ...).
        ignore_index: the target's void label, or None.
        tolerances: boundary F tolerances (see :class:`BoundaryFScore`).
        biou_dilation: Boundary IoU band width (see :class:`BoundaryIoU`).
        trimap_widths: trimap band widths in pixels.

    Shape:
        ``update(preds, target)``: preds class ids (N, H, W) or scores (N, C, H, W); target
        class ids (N, H, W).
    """

    def __init__(
        self,
        num_classes: int,
        classes: Sequence[str] | None = None,
        ignore_index: int | None = 255,
        tolerances: Sequence[float] = (1, 3),
        biou_dilation: float = 0.02,
        trimap_widths: Sequence[int] = (1, 2, 4, 8, 16, 32),
    ) -> None:
        super().__init__()
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"got {len(classes)} class names for {num_classes} classes")
        self.classes = (
            tuple(classes) if classes is not None else tuple(map(str, range(num_classes)))
        )
        args = {"num_classes": num_classes, "ignore_index": ignore_index}
        self.seg = SegmentationMetrics(**args)
        self.bf = BoundaryFScore(**args, tolerances=tuple(tolerances), absent="one")
        self.bf_skip = BoundaryFScore(**args, tolerances=tuple(tolerances), absent="skip")
        self.biou = BoundaryIoU(**args, dilation=biou_dilation)
        self.trimap_iou = TrimapIoU(**args, widths=tuple(trimap_widths))

    def parts(self) -> tuple[nn.Module, ...]:
        return (self.seg, self.bf, self.bf_skip, self.biou, self.trimap_iou)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch to every metric (scores are turned into class ids once)."""
        if preds.is_floating_point():
            preds = preds.argmax(dim=1)
        for metric in self.parts():
            metric.update(preds, target)

    def reset(self) -> None:
        for metric in self.parts():
            metric.reset()

    def compute(self) -> SuiteResult:
        seg, bf, bf_skip = self.seg.compute(), self.bf.compute(), self.bf_skip.compute()
        biou, trimap = self.biou.compute(), self.trimap_iou.compute()
        headline = {key: float(seg[key]) for key in ("mIoU", "mAcc", "aAcc")}
        for name in self.bf.names:
            headline[f"BF@{name}"] = float(bf[f"BF@{name}"])
            headline[f"BF@{name}_skip"] = float(bf_skip[f"BF@{name}"])
        headline["mBIoU"] = float(biou["mBIoU"])
        widths = self.trimap_iou.widths
        curve = {w: float(v) for w, v in zip(widths, trimap["trimap_mIoU"], strict=True)}
        headline.update({f"trimap_mIoU@{w}px": v for w, v in curve.items()})
        per_class = {}
        for c, name in enumerate(self.classes):
            row = {"IoU": float(seg["IoU"][c]), "Acc": float(seg["Acc"][c])}
            for t in self.bf.names:
                for kind in ("F", "P", "R"):
                    row[f"{kind}@{t}"] = float(bf[f"{kind}@{t}"][c])
                row[f"F@{t}_skip"] = float(bf_skip[f"F@{t}"][c])
            row["BIoU"] = float(biou["BIoU"][c])
            per_class[name] = row
        confusion = self.seg.confmat.tolist()
        return SuiteResult(headline, per_class, curve, confusion)
