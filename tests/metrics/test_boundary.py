"""BoundaryFScore and the functional boundary F-score (definition: docs/metrics.md; DAVIS
``db_eval_boundary``, openseg ``lib/metrics/F1_running_score.py``)."""

import math

import numpy as np
import pytest
import torch

from sdnseg.metrics import BoundaryFScore, _packed
from sdnseg.metrics import functional as MF
from tests.metrics.reference_boundary import boundary_f_reference, seg2bmap_np


def blob_maps(n, c, h, w, seed, void=0.05, noise=0.1):
    """Piecewise-constant targets (upsampled coarse labels) with void specks; predictions are the
    targets with a fraction of pixels relabelled, so boundaries are near but not equal."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, c, (n, 1, max(2, h // 4), max(2, w // 4)), generator=g)
    target = torch.nn.functional.interpolate(coarse.float(), size=(h, w), mode="nearest")
    target = target[:, 0].long()
    pred = target.clone()
    flip = torch.rand(pred.shape, generator=g) < noise
    pred[flip] = torch.randint(0, c, (int(flip.sum()),), generator=g)
    target[torch.rand(target.shape, generator=g) < void] = 255
    return pred, target


def test_seg2bmap_matches_numpy_transcription():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 7, 9, generator=g) < 0.4
    ours = MF.seg2bmap(masks)
    for m, b in zip(masks, ours, strict=True):
        np.testing.assert_array_equal(b.numpy(), seg2bmap_np(m.numpy()))
    # A whole-image class has no boundary: the image border is none.
    assert not MF.seg2bmap(torch.ones(5, 6)).any()


def test_step_edge_shifted_by_d_matches_iff_d_within_tolerance():
    target = torch.zeros(1, 12, 20, dtype=torch.long)
    target[..., 8:] = 1
    for d in range(5):
        pred = torch.zeros_like(target)
        pred[..., 8 + d :] = 1
        for tol in (1, 3):
            mean, per_class = MF.boundary_f_score(pred, target, 2, tol)
            expected = 1.0 if d <= tol else 0.0
            torch.testing.assert_close(per_class, torch.full((2,), expected))
            assert mean.item() == expected


def test_diagonal_offset_is_a_disk_not_a_square():
    # Single pixels of class 1 at (5, 5) and (7, 7): the nearest boundary pixels, (5, 5) and
    # (6, 6), are sqrt(2) apart. A 3x3 square would match them at 1 px; the disk does not.
    target = torch.zeros(1, 12, 12, dtype=torch.long)
    pred = torch.zeros_like(target)
    target[0, 5, 5] = 1
    pred[0, 7, 7] = 1
    _, f1 = MF.boundary_f_score(pred, target, 2, 1)
    _, f2 = MF.boundary_f_score(pred, target, 2, 2)
    torch.testing.assert_close(f1, torch.zeros(2))
    # At 2 px one of four boundary pixels matches each way: P = R = F = 1/4.
    torch.testing.assert_close(f2, torch.full((2,), 0.25))
    for tol, f in ((1, f1), (2, f2)):
        _, ref = boundary_f_reference(pred.numpy(), target.numpy(), 2, tol)
        np.testing.assert_allclose(f.numpy(), ref[0], atol=1e-6)


def test_absent_classes_one_and_skip():
    # Class 0 fills the left half in both maps; class 1 the right half of the target but class 3
    # is predicted there; class 2 is absent from both.
    target = torch.zeros(1, 6, 8, dtype=torch.long)
    target[..., 4:] = 1
    pred = target.clone()
    pred[pred == 1] = 3
    metric = BoundaryFScore(4, tolerances=(1,))
    metric.update(pred, target)
    out = metric.compute()
    torch.testing.assert_close(out["F@1px"], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    # Only a target boundary: P = 1, R = 0; only a predicted one: P = 0, R = 1; none: 1, 1.
    torch.testing.assert_close(out["P@1px"], torch.tensor([1.0, 1.0, 1.0, 0.0]))
    torch.testing.assert_close(out["R@1px"], torch.tensor([1.0, 0.0, 1.0, 1.0]))
    assert out["BF@1px"].item() == pytest.approx(0.5)

    skip = BoundaryFScore(4, tolerances=(1,), absent="skip")
    skip.update(pred, target)
    out = skip.compute()
    assert math.isnan(out["F@1px"][2]) and math.isnan(out["P@1px"][2])
    assert out["BF@1px"].item() == pytest.approx(1 / 3)
    mean, per_class = MF.boundary_f_score(pred, target, 4, 1, absent="skip")
    torch.testing.assert_close(per_class, out["F@1px"], equal_nan=True)
    assert mean.item() == pytest.approx(1 / 3)


def test_void_interface_is_a_target_boundary():
    # Class 1 on the left, void on the right. The prediction says 1 everywhere; void pixels are
    # background in both maps, so both have a boundary along the void interface (column 3).
    target = torch.ones(1, 5, 8, dtype=torch.long)
    target[..., 4:] = 255
    pred = torch.ones_like(target)
    n_pred, n_target, _, _ = MF.boundary_counts(pred, target, 2, [1.0])
    assert n_target[0].tolist() == [0, 5] and n_pred[0].tolist() == [0, 5]
    assert MF.seg2bmap((target == 1)[0])[:, 3].all()
    _, per_class = MF.boundary_f_score(pred, target, 2, 1)
    torch.testing.assert_close(per_class, torch.ones(2))
    # Without an ignore index, 255 is an error, not a label.
    with pytest.raises(ValueError, match="255"):
        MF.boundary_f_score(pred, target, 2, 1, ignore_index=None)


def test_whole_image_class_has_no_boundary():
    target = torch.zeros(2, 7, 9, dtype=torch.long)
    mean, per_class = MF.boundary_f_score(target, target, 3, 3)
    assert mean.item() == 1.0 and per_class.tolist() == [1.0, 1.0, 1.0]
    mean, per_class = MF.boundary_f_score(target, target, 3, 3, absent="skip")
    assert math.isnan(mean.item()) and per_class.isnan().all()


def test_fractional_tolerance_radius_and_names():
    assert MF.tolerance_radius(0.00088, 1024, 2048) == 3  # openseg's default on Cityscapes
    assert MF.tolerance_radius(0.0005, 1024, 2048) == 2
    assert MF.tolerance_radius(0.005, 1024, 2048) == 12
    assert MF.tolerance_radius(3, 1024, 2048) == 3
    assert MF.tolerance_name(3) == "3px" and MF.tolerance_name(0.00088) == "0.00088"
    assert BoundaryFScore(2, tolerances=(1, 1.5, 0.00088)).names == ["1px", "1.5px", "0.00088"]
    assert BoundaryFScore(2, tolerances=3).names == ["3px"]


@pytest.mark.parametrize(("c", "group_pixels"), [(5, 1 << 21), (5, 500), (40, 1 << 21), (70, 900)])
def test_matches_slow_reference_on_random_maps(c, group_pixels, monkeypatch):
    # 40 classes take int64 words, 70 two chunks of classes; small groups take the per-group path.
    monkeypatch.setattr(_packed, "GROUP_PIXELS", group_pixels)
    pred, target = blob_maps(3, c, 19, 26, seed=c)
    pn, tn = pred.numpy(), target.numpy()
    tolerances = (1, 1.5, 2, 3, 0.06)  # 0.06 of the 32.2 px diagonal rounds up to 2 px
    for absent in ("one", "skip"):
        metric = BoundaryFScore(c, tolerances=tolerances, absent=absent)
        metric.update(pred, target)
        out = metric.compute()
        for tol, name in zip(tolerances, metric.names, strict=True):
            ref_mean, ref = boundary_f_reference(pn, tn, c, tol, absent=absent)
            for key, row in zip("FPR", ref, strict=True):
                np.testing.assert_allclose(out[f"{key}@{name}"].numpy(), row, atol=1e-6)
            np.testing.assert_allclose(out[f"BF@{name}"].item(), ref_mean, atol=1e-6)
            mean, per_class = MF.boundary_f_score(pred, target, c, tol, absent=absent)
            np.testing.assert_allclose(per_class.numpy(), ref[0], atol=1e-6)
            np.testing.assert_allclose(mean.item(), ref_mean, atol=1e-6)


def test_updates_accumulate_and_scores_are_argmaxed():
    pred, target = blob_maps(4, 6, 16, 20, seed=1)
    whole = BoundaryFScore(6)
    whole.update(pred, target)
    split = BoundaryFScore(6)
    scores = torch.nn.functional.one_hot(pred, 6).permute(0, 3, 1, 2).float()
    split.update(scores[:1], target[:1])
    split.update(pred[1:], target[1:].to(torch.uint8))
    a, b = whole.compute(), split.compute()
    assert set(a) == {f"{k}@{t}px" for k in ("BF", "F", "P", "R") for t in (1, 3)}
    for key in a:
        torch.testing.assert_close(a[key], b[key])
        assert a[key].dtype == torch.float32
        assert ((a[key] >= 0) & (a[key] <= 1)).all()
    assert a["BF@1px"].ndim == 0 and a["F@3px"].shape == (6,)


def test_errors_name_the_offending_value():
    target = torch.zeros(1, 4, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(1, 4, 6\) vs \(1, 4, 5\)"):
        MF.boundary_f_score(torch.zeros(1, 4, 6, dtype=torch.long), target, 3, 1)
    with pytest.raises(ValueError, match="class id 7"):
        MF.boundary_f_score(target, target + 7, 3, 1)
    with pytest.raises(ValueError, match="preds hold class id 3"):
        MF.boundary_f_score(target + 3, target, 3, 1)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        MF.boundary_f_score(torch.zeros(1, 2, 4, 5), target, 3, 1)
    with pytest.raises(ValueError, match="tolerance"):
        MF.boundary_f_score(target, target, 3, 0)
    with pytest.raises(ValueError, match="absent"):
        BoundaryFScore(3, absent="nan")
    with pytest.raises(ValueError, match="distinct"):
        BoundaryFScore(3, tolerances=(1, 1.0))
    with pytest.raises(ValueError, match="ignore_index=2"):
        BoundaryFScore(3, ignore_index=2)
    with pytest.raises(ValueError, match="num_classes"):
        BoundaryFScore(0)
