"""SegmentationMetrics and the functional confusion matrix (mmsegmentation's IoU / Acc rules)."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from sdnseg.metrics import SegmentationMetrics
from sdnseg.metrics import functional as MF


def test_hand_computed_confusion_matrix_and_scores():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 0]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 3, 0]]])
    cm = MF.confusion_matrix(pred, target, 4)
    # rows = target, columns = prediction; the void pixel (predicted 3) is left out.
    expected = torch.tensor([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(cm, expected)
    m = SegmentationMetrics(4)
    m.update(pred, target)
    out = m.compute()
    # IoU: 2/(3+3-2), 2/(2+3-2), 1/(2+1-1); class 3 absent from both -> NaN.
    torch.testing.assert_close(out["IoU"][:3], torch.tensor([0.5, 2 / 3, 0.5]))
    torch.testing.assert_close(out["Acc"][:3], torch.tensor([2 / 3, 1.0, 0.5]))
    assert math.isnan(out["IoU"][3]) and math.isnan(out["Acc"][3])
    assert out["mIoU"].item() == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert out["mAcc"].item() == pytest.approx((2 / 3 + 1.0 + 0.5) / 3)
    assert out["aAcc"].item() == pytest.approx(5 / 7)
    assert all(out[k].ndim == 0 and out[k].dtype == torch.float32 for k in ("mIoU", "mAcc"))


def test_nan_rules_follow_mmsegmentation():
    # Class 1 only predicted: IoU 0, Acc NaN. Class 2 only in the target: IoU 0, Acc 0.
    # Class 3 nowhere: both NaN. NaNs are left out of the means.
    target = torch.tensor([[[0, 0, 2, 2]]])
    pred = torch.tensor([[[0, 1, 0, 0]]])
    out = MF.segmentation_scores(MF.confusion_matrix(pred, target, 4))
    iou, acc = out["IoU"], out["Acc"]
    assert iou[1] == 0 and math.isnan(acc[1])
    assert iou[2] == 0 and acc[2] == 0
    assert math.isnan(iou[3]) and math.isnan(acc[3])
    assert out["mIoU"].item() == pytest.approx((1 / 4 + 0 + 0) / 3)
    assert out["mAcc"].item() == pytest.approx((1 / 2 + 0) / 2)
    empty = MF.segmentation_scores(torch.zeros(3, 3, dtype=torch.int64))
    assert all(math.isnan(empty[k]) for k in ("mIoU", "mAcc", "aAcc"))


def test_agrees_with_torchmetrics_where_conventions_agree():
    g = torch.Generator().manual_seed(0)
    c = 6
    target = torch.randint(0, c, (3, 17, 23), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    pred = torch.where(
        torch.rand(target.shape, generator=g) < 0.7,
        target.clamp(max=c - 1),
        torch.randint(0, c, target.shape, generator=g),
    )
    ours = SegmentationMetrics(c)
    ours.update(pred, target)
    out = ours.compute()
    # Every class is present, so torchmetrics' zero-division handling plays no part.
    jac = MulticlassJaccardIndex(c, average=None, ignore_index=255)
    rec = MulticlassAccuracy(c, average=None, ignore_index=255)
    acc = MulticlassAccuracy(c, average="micro", ignore_index=255)
    torch.testing.assert_close(out["IoU"], jac(pred, target))
    torch.testing.assert_close(out["Acc"], rec(pred, target))
    torch.testing.assert_close(out["aAcc"], acc(pred, target))
    torch.testing.assert_close(out["mIoU"], jac(pred, target).mean())


def test_scores_input_updates_accumulate_and_reset():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 5, 8, 9, generator=g)
    target = torch.randint(0, 5, (4, 8, 9), generator=g).to(torch.uint8)
    whole = MF.confusion_matrix(scores.argmax(1), target, 5)
    m = SegmentationMetrics(5)
    m.update(scores[:1], target[:1])
    m.update(scores[1:].argmax(1).int(), target[1:])
    assert torch.equal(m.confmat, whole)
    m.reset()
    assert m.confmat.sum() == 0


def test_bool_maps_are_two_class_labels():
    target = torch.tensor([[[True, False, True]]])
    pred = torch.tensor([[[True, True, False]]])
    assert MF.confusion_matrix(pred, target, 2).tolist() == [[0, 1], [1, 1]]
    with pytest.raises(ValueError, match="preds hold class id 1"):
        MF.confusion_matrix(pred, target.long() * 0, 1)


def test_ignore_index_variants():
    target = torch.tensor([[[0, -1, 1]]])
    pred = torch.tensor([[[0, 1, 1]]])
    assert MF.confusion_matrix(pred, target, 2, ignore_index=-1).sum() == 2
    target = torch.tensor([[[0, 1, 1]]])
    assert MF.confusion_matrix(pred, target, 2, ignore_index=None).trace() == 3


def test_errors_name_the_offending_value():
    target = torch.zeros(2, 3, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(2, 3, 5\) vs \(2, 3, 4\)"):
        MF.confusion_matrix(torch.zeros(2, 3, 5, dtype=torch.long), target, 3)
    for bad in (7, 100, -1, 3):
        t = target.clone()
        t[0, 0, 0] = bad
        with pytest.raises(ValueError, match=f"target holds class id {bad};"):
            MF.confusion_matrix(target, t, 3)
    with pytest.raises(ValueError, match="preds hold class id 3"):
        MF.confusion_matrix(target + 3, target, 3)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        MF.confusion_matrix(torch.zeros(2, 4, 3, 4), target, 3)
    with pytest.raises(ValueError, match="integer class ids"):
        MF.confusion_matrix(target, target.float(), 3)
    with pytest.raises(ValueError, match="ignore_index=1"):
        SegmentationMetrics(3, ignore_index=1)
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetrics(2.5)
