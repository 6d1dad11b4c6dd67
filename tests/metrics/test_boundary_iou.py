"""BoundaryIoU and TrimapIoU metrics: accumulation over batches, scores from the summed counts."""

import numpy as np
import pytest
import torch

from sdnseg.metrics import BoundaryIoU, TrimapIoU
from sdnseg.metrics.functional import segmentation_scores

from .reference_bands import opencv_boundary_iou_counts, scipy_trimap
from .test_bands import blobs


def test_boundary_iou_sums_counts_over_batches_then_divides():
    target = blobs(3, 30, 40, 4, seed=5, void_fraction=0.15)
    preds = blobs(3, 30, 40, 4, seed=6)
    metric = BoundaryIoU(4, dilation=2)
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    inter, union = opencv_boundary_iou_counts(preds, target, 4, 2, 255)
    out = metric.compute()
    np.testing.assert_allclose(out["BIoU"].numpy(), inter / union, rtol=1e-6)
    assert out["mBIoU"] == pytest.approx(float(np.mean(inter / union)), rel=1e-6)


def test_boundary_iou_perfect_and_absent_classes():
    target = torch.zeros(1, 12, 12, dtype=torch.long)
    target[0, 2:8, 2:8] = 1
    metric = BoundaryIoU(3, dilation=0.1)
    metric.update(target, target)
    out = metric.compute()
    assert out["BIoU"][:2].tolist() == [1.0, 1.0]
    assert torch.isnan(out["BIoU"][2])  # class 2 in neither map
    assert out["mBIoU"] == 1.0
    with pytest.raises(ValueError, match="dilation"):
        BoundaryIoU(3, dilation=-1)


def test_trimap_iou_scores_per_width():
    target = blobs(2, 33, 35, 3, seed=7, void_fraction=0.1)
    preds = blobs(2, 33, 35, 3, seed=8)
    metric = TrimapIoU(3, widths=(2, 5))
    metric.update(preds, target)
    out = metric.compute()
    assert out["trimap_mIoU"].shape == (2,) and out["trimap_IoU"].shape == (2, 3)
    for k, width in enumerate((2, 5)):
        expected = segmentation_scores(torch.from_numpy(scipy_trimap(preds, target, 3, width, 255)))
        torch.testing.assert_close(out["trimap_IoU"][k], expected["IoU"], equal_nan=True)
        torch.testing.assert_close(out["trimap_mIoU"][k], expected["mIoU"])
