"""Segmentation metrics: mIoU family and boundary F-score; functional forms in ``functional``."""

from sdnseg.metrics import functional
from sdnseg.metrics.boundary import BoundaryFScore
from sdnseg.metrics.segmentation import SegmentationMetrics

__all__ = ["BoundaryFScore", "SegmentationMetrics", "functional"]
