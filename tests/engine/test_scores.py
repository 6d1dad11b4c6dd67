"""SegmentationScores: the logged numbers of a stage, against a hand count."""

import numpy as np
import pytest
import torch

from sdnseg.engine.scores import SegmentationScores


def test_scores_accumulate_over_batches_and_name_classes():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, size=(2, 16, 16))
    pred = np.where(rng.random((2, 16, 16)) < 0.7, target, rng.integers(0, 3, size=(2, 16, 16)))
    target[0, :2] = 255  # unlabelled rows are left out
    scores = SegmentationScores(3, ignore_index=255, tolerances=(1, 3))
    for i in range(2):  # one image per batch: the sums carry over
        scores.update(torch.as_tensor(pred[i : i + 1]), torch.as_tensor(target[i : i + 1]))
    values = scores.compute(["road", "sky", "car"])
    labelled = target != 255
    ious = []
    for c in range(3):
        p, t = (pred == c) & labelled, (target == c) & labelled
        ious.append((p & t).sum() / (p | t).sum())
    assert values["mIoU"].item() == pytest.approx(np.mean(ious), abs=1e-6)
    for c, name in enumerate(["road", "sky", "car"]):
        assert values[f"IoU/{name}"].item() == pytest.approx(ious[c], abs=1e-6)
    accs = [((pred == c) & (target == c)).sum() / (target == c).sum() for c in range(3)]
    assert values["mAcc"].item() == pytest.approx(np.mean(accs), abs=1e-6)
    assert values["aAcc"].item() == pytest.approx((pred == target)[labelled].mean(), abs=1e-6)
    assert {"BF@1px", "BF@1px_skip", "BF@3px", "BF@3px_skip"} <= set(values)
    assert "IoU/road" not in scores.compute()  # per-class only when the names are given
    scores.reset()
    scores.update(torch.as_tensor(target[1:]), torch.as_tensor(target[1:]))
    assert scores.compute()["mIoU"].item() == pytest.approx(1.0)


def test_a_class_absent_from_both_maps_counts_one_or_is_skipped():
    # Class 2 appears in neither map: F = 1 for it under "one", left out under "skip".
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[:, :, 8:] = 1
    pred = target.clone()
    pred[:, :, 6:8] = 1  # the class-0/1 boundary moved by 2 px: no match within 1 px, F = 0
    scores = SegmentationScores(3, ignore_index=255, tolerances=(1, 3))
    scores.update(pred, target)
    values = scores.compute()
    assert values["BF@1px_skip"].item() == 0.0  # classes 0 and 1 only
    assert values["BF@1px"].item() == pytest.approx(1 / 3)  # (0 + 0 + 1) / 3
    assert values["BF@3px_skip"].item() == pytest.approx(1.0)  # within 3 px everything matches
