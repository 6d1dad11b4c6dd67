"""Slow loop reference of the boundary F-score, written from the spec (docs/metrics.md; DAVIS
``db_eval_boundary``, openseg ``lib/metrics/F1_running_score.py``).

numpy ``seg2bmap`` as in BSDS / DAVIS, matching by ``scipy.ndimage.distance_transform_edt`` (exact
Euclidean distance, independent of any dilation kernel), one (image, class) pair at a time.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import distance_transform_edt


def seg2bmap_np(seg: np.ndarray) -> np.ndarray:
    """BSDS seg2bmap of one binary (H, W) mask, transcribed from the DAVIS code."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def pair_scores(pm: np.ndarray, gm: np.ndarray, r: float) -> tuple[float, float, float, bool]:
    """(F, P, R, present) of one binary prediction / target pair at radius r."""
    pb, gb = seg2bmap_np(pm), seg2bmap_np(gm)
    npb, ngb = int(pb.sum()), int(gb.sum())
    if npb == 0 and ngb == 0:
        return 1.0, 1.0, 1.0, False
    if npb == 0:
        return 0.0, 1.0, 0.0, True
    if ngb == 0:
        return 0.0, 0.0, 1.0, True
    dg = distance_transform_edt(~gb)
    dp = distance_transform_edt(~pb)
    p = float((pb & (dg <= r)).sum()) / npb
    rec = float((gb & (dp <= r)).sum()) / ngb
    f = 0.0 if p + rec == 0 else 2 * p * rec / (p + rec)
    return f, p, rec, True


def boundary_f_reference(preds, target, num_classes, tol, ignore_index=255, absent="one"):
    """Per-class mean F, P, R over images and the mean F over classes (NaN-aware for "skip")."""
    preds, target = np.asarray(preds), np.asarray(target)
    sums = np.zeros((3, num_classes))
    counts = np.zeros(num_classes)
    for pred, gt in zip(preds, target, strict=True):
        h, w = gt.shape
        r = tol if tol >= 1 else math.ceil(tol * np.linalg.norm((h, w)))
        ign = gt == ignore_index
        for c in range(num_classes):
            f, p, rec, present = pair_scores((pred == c) & ~ign, (gt == c) & ~ign, r)
            if absent == "skip" and not present:
                continue
            sums[:, c] += (f, p, rec)
            counts[c] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.nanmean(per_class[0]), per_class
