"""Segmentation metrics: mIoU family, boundary F-score, Boundary IoU and trimap IoU; functional
forms in ``functional`` and ``bands``; :class:`SegFixScores` for SegFix networks."""

from sdnseg.metrics import bands, functional
from sdnseg.metrics.boundary import BoundaryFScore
from sdnseg.metrics.boundary_iou import BoundaryIoU
from sdnseg.metrics.segfix import SegFixScores
from sdnseg.metrics.segmentation import SegmentationMetrics
from sdnseg.metrics.suite import MetricSuite, SuiteResult
from sdnseg.metrics.trimap import TrimapIoU

__all__ = [
    "BoundaryFScore",
    "BoundaryIoU",
    "MetricSuite",
    "SegFixScores",
    "SegmentationMetrics",
    "SuiteResult",
    "TrimapIoU",
    "bands",
    "functional",
]
