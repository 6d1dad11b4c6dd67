"""The anchor of the boundary-F benchmark: the per-class, per-image evaluation loop of the public
GSCNN / openseg evaluators (``utils/f_boundary.py``, ``lib/metrics/F1_running_score.py``), with
``scipy.ndimage.binary_dilation`` where they use cv2 / skimage with the same disk."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import binary_dilation

# The same transcription of BSDS/DAVIS seg2bmap that the tests' boundary-F reference uses.
from tests.metrics.reference_boundary import seg2bmap_np as seg2bmap


def disk(r: int) -> np.ndarray:
    """skimage.morphology.disk(r)."""
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def db_eval_boundary(fg: np.ndarray, gt: np.ndarray, ignore: np.ndarray, bound_th: float):
    """openseg / GSCNN ``db_eval_boundary``: (F, P) of one class in one image."""
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(fg.shape))
    fg = fg.copy()
    gt = gt.copy()
    fg[ignore] = 0
    gt[ignore] = 0
    fg_b = seg2bmap(fg)
    gt_b = seg2bmap(gt)
    se = disk(int(bound_pix))
    fg_dil = binary_dilation(fg_b, se)
    gt_dil = binary_dilation(gt_b, se)
    gt_match = gt_b & fg_dil
    fg_match = fg_b & gt_dil
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision, recall = fg_match.sum() / n_fg, gt_match.sum() / n_gt
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f, precision


def anchor_boundary_f(
    preds: np.ndarray, targets: np.ndarray, bound_th: float, num_classes: int, ignore_index: int
) -> np.ndarray:
    """Per-class F summed over images, one tolerance (one F1RunningScore per threshold)."""
    f_sum = np.zeros(num_classes)
    for pred, gt in zip(preds, targets, strict=True):
        ignore = gt == ignore_index
        for c in range(num_classes):
            f_sum[c] += db_eval_boundary(pred == c, gt == c, ignore, bound_th)[0]
    return f_sum
