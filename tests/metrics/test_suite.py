"""MetricSuite: every metric updated together, reported as plain numbers and per-class rows."""

import json

import pytest
import torch

from sdnseg.metrics import BoundaryFScore, BoundaryIoU, MetricSuite, SegmentationMetrics, TrimapIoU

from .test_bands import blobs


def test_suite_equals_its_metrics_run_alone():
    target = blobs(2, 24, 30, 3, seed=9, void_fraction=0.1)
    preds = blobs(2, 24, 30, 3, seed=10)
    suite = MetricSuite(3, classes=["a", "b", "c"], tolerances=(1, 2), trimap_widths=(1, 4))
    suite.update(torch.nn.functional.one_hot(preds, 3).permute(0, 3, 1, 2).float(), target)
    result = suite.compute()
    seg, biou = SegmentationMetrics(3), BoundaryIoU(3)
    bf, trimap = BoundaryFScore(3, (1, 2), absent="skip"), TrimapIoU(3, (1, 4))
    for metric in (seg, biou, bf, trimap):
        metric.update(preds, target)
    assert result.headline["mIoU"] == pytest.approx(float(seg.compute()["mIoU"]))
    assert result.headline["BF@2px_skip"] == pytest.approx(float(bf.compute()["BF@2px"]))
    assert result.headline["mBIoU"] == pytest.approx(float(biou.compute()["mBIoU"]))
    assert result.trimap[4] == pytest.approx(float(trimap.compute()["trimap_mIoU"][1]))
    assert result.headline["trimap_mIoU@4px"] == result.trimap[4]
    assert list(result.per_class) == ["a", "b", "c"]
    assert set(result.per_class["b"]) >= {"IoU", "Acc", "F@1px", "P@1px", "R@1px", "BIoU"}
    assert sum(map(sum, result.confusion)) == int((target != 255).sum())
    json.dumps(result.to_dict())  # JSON-ready
    suite.reset()
    assert suite.seg.confmat.sum() == 0 and suite.biou.union.sum() == 0


def test_suite_checks_class_names():
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        MetricSuite(3, classes=["a", "b"])
