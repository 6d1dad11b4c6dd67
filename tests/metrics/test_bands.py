"""Boundary bands, Boundary IoU counts and trimap matrices against independent references:
OpenCV erosion as the Boundary IoU API's ``mask_to_boundary`` does it, and scipy's chessboard
distance transform for the trimap."""

import numpy as np
import pytest
import torch

from sdnseg.metrics.bands import (
    band_radius,
    boundary_iou_counts,
    chessboard_dilate,
    edge_pixels,
    trimap_confusion_matrices,
)

pytest.importorskip("cv2", reason="the test extra installs opencv-python-headless")
from .reference_bands import opencv_boundary_iou_counts, scipy_trimap  # noqa: E402


def blobs(n, h, w, num_classes, seed, void_fraction=0.0):
    """Piecewise-constant random label maps (upsampled noise), optionally with void blobs."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (n, 1, h // 6 + 1, w // 6 + 1), generator=g)
    maps = torch.nn.functional.interpolate(coarse.float(), size=(h, w), mode="nearest")[:, 0]
    maps = maps.long()
    if void_fraction:
        noise = torch.rand(n, 1, h // 5 + 1, w // 5 + 1, generator=g)
        void = torch.nn.functional.interpolate(noise, size=(h, w), mode="nearest")[:, 0]
        maps[void < void_fraction] = 255
    return maps


@pytest.mark.parametrize("dilation", [1, 2, 3, 0.05])
@pytest.mark.parametrize("void", [0.0, 0.2])
def test_boundary_iou_counts_equal_opencv(dilation, void):
    target = blobs(2, 37, 53, 4, seed=1, void_fraction=void)
    preds = blobs(2, 37, 53, 4, seed=2).clamp_max(3)
    radius = band_radius(dilation, 37, 53)
    inter, union = boundary_iou_counts(preds, target, 4, dilation, ignore_index=255)
    ref_inter, ref_union = opencv_boundary_iou_counts(preds, target, 4, radius, 255)
    np.testing.assert_array_equal(inter.numpy(), ref_inter)
    np.testing.assert_array_equal(union.numpy(), ref_union)


def test_boundary_iou_on_a_hand_made_square():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 3:7, 3:7] = 1
    inter, union = boundary_iou_counts(target, target, 2, dilation=1)
    # class 1: the square's 12 rim pixels; class 0: the 20-pixel ring around it + 36 border pixels
    assert inter.tolist() == union.tolist() == [56, 12]
    shifted = torch.roll(target, 1, dims=-1)
    inter, union = boundary_iou_counts(shifted, target, 2, dilation=1)
    assert 0 < inter[1] < union[1]


def test_band_radius_and_dilation():
    assert band_radius(3, 100, 100) == 3
    assert band_radius(0.02, 1024, 2048) == round(0.02 * (1024**2 + 2048**2) ** 0.5) == 46
    assert band_radius(0.0001, 10, 10) == 1
    for bad in (0, -1, 2.5, float("nan"), True):
        with pytest.raises(ValueError):
            band_radius(bad, 10, 10)
    mask = torch.zeros(1, 15, 15, dtype=torch.bool)
    mask[0, 7, 7] = True
    for r in range(6):
        dilated = chessboard_dilate(mask, r)
        assert dilated.sum() == (2 * r + 1) ** 2
        assert dilated[0, 7 - r : 8 + r, 7 - r : 8 + r].all()


@pytest.mark.parametrize("void", [0.0, 0.2])
def test_trimap_matrices_equal_scipy(void):
    target = blobs(2, 41, 47, 5, seed=3, void_fraction=void)
    preds = blobs(2, 41, 47, 5, seed=4)
    widths = (4, 1, 2, 9)  # any order
    mats = trimap_confusion_matrices(preds, target, 5, widths, ignore_index=255)
    for k, width in enumerate(widths):
        np.testing.assert_array_equal(mats[k].numpy(), scipy_trimap(preds, target, 5, width, 255))
    # A band as wide as the image holds every labelled pixel: the plain confusion matrix.
    from sdnseg.metrics.functional import confusion_matrix

    full = trimap_confusion_matrices(preds, target, 5, (100,), ignore_index=255)[0]
    if (edge_pixels(target, border=False)).any():
        torch.testing.assert_close(full, confusion_matrix(preds, target, 5, 255))


def test_bad_input_is_named():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="class id 7"):
        boundary_iou_counts(target, target + 7, 3)
    with pytest.raises(ValueError, match="widths"):
        trimap_confusion_matrices(target, target, 3, (0,))
    with pytest.raises(ValueError, match="shapes differ"):
        boundary_iou_counts(target, target[:, :4], 3)
