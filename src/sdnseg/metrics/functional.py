"""Functional segmentation metrics: confusion matrix (mIoU family) and boundary F-score.

* :func:`confusion_matrix` and :func:`segmentation_scores`: IoU / Acc with mmsegmentation's NaN
  rules (``mmseg/evaluation/metrics/iou_metric.py``).
* :func:`seg2bmap`, :func:`boundary_scores` and :func:`boundary_f_score`: the boundary F-score of
  DAVIS ``db_eval_boundary``, as adapted by GSCNN (``utils/f_boundary.py``) and SegFix/openseg
  (``lib/metrics/F1_running_score.py``); see ``docs/metrics.md``.

The packed-word fast path of the boundary counts lives in :mod:`sdnseg.metrics._packed`.

Length: a little over ~400 lines because the input checks shared by both metric families sit with the two families they guard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from sdnseg.metrics import _packed

ABSENT_MODES = ("one", "skip")


# --------------------------------------------------------------------------------------------
# Input checks shared by both metric families.


def check_num_classes(num_classes: int) -> None:
    """Raise ``ValueError`` unless ``num_classes`` is a positive int."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")


def check_ignore_index(ignore_index: int | None, num_classes: int) -> None:
    """Raise ``ValueError`` if ``ignore_index`` is not an int outside ``[0, num_classes)``."""
    if ignore_index is None:
        return
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index={ignore_index} is a class id; it must lie outside [0, {num_classes - 1}]"
        )


def label_maps(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes; turn scores into class ids; check the predicted ids' range.

    Args:
        preds: class ids (N, H, W) of an integer dtype, or scores (N, C, H, W) of a floating
            dtype (argmax over dim 1).
        target: class ids (N, H, W) of an integer dtype (values are checked by the callers, which
            know how to treat ``ignore_index``).
        num_classes: C.

    Returns:
        ``(preds, target)`` as (N, H, W) integer tensors (dtypes kept where possible).
    """
    if not isinstance(preds, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(
            f"preds and target must be tensors, got {type(preds).__name__} and "
            f"{type(target).__name__}"
        )
    if target.is_floating_point() or target.is_complex() or target.ndim != 3:
        raise ValueError(
            f"target must hold integer class ids of shape (N, H, W), got dtype {target.dtype} "
            f"and shape {tuple(target.shape)}"
        )
    if preds.is_floating_point():
        if preds.ndim != 4 or preds.shape[1] != num_classes:
            raise ValueError(
                f"floating preds must be scores of shape (N, {num_classes}, H, W), got shape "
                f"{tuple(preds.shape)}"
            )
        preds = preds.argmax(dim=1)
    elif preds.is_complex() or preds.ndim != 3:
        raise ValueError(
            f"integer preds must be class ids of shape (N, H, W), got dtype {preds.dtype} and "
            f"shape {tuple(preds.shape)}"
        )
    # Bool maps are two-class label maps; uint8 has the integer ops the checks need.
    if preds.dtype == torch.bool:
        preds = preds.to(torch.uint8)
    if target.dtype == torch.bool:
        target = target.to(torch.uint8)
    if preds.shape != target.shape:
        raise ValueError(
            f"preds (as class ids) and target shapes differ: {tuple(preds.shape)} vs "
            f"{tuple(target.shape)}"
        )
    if preds.device != target.device:
        raise ValueError(f"preds and target devices differ: {preds.device} vs {target.device}")
    if preds.numel() > 0:
        lo, hi = (int(v) for v in torch.aminmax(preds))
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"preds hold class id {bad}; expected values in [0, {num_classes - 1}]"
            )
    return preds, target


def _bad_target_error(value: int, num_classes: int, ignore_index: int | None) -> ValueError:
    ignore = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    return ValueError(
        f"target holds class id {value}; expected values in [0, {num_classes - 1}]{ignore}"
    )


# --------------------------------------------------------------------------------------------
# Confusion matrix, IoU and accuracy.


def confusion_matrix(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Pixel confusion matrix, rows = target class, columns = predicted class.

    Pixels whose target is ``ignore_index`` are left out. One ``bincount`` over
    ``target * C + pred`` (torchvision's ``references/segmentation/utils.py`` idea); the target
    is binned over its whole value range, so a stray target value shows up as a non-empty row and
    costs no extra pass.

    Args:
        preds: class ids (N, H, W) or scores (N, C, H, W).
        target: class ids (N, H, W) in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        ignore_index: target value to leave out, or None.

    Returns:
        (C, C) int64 tensor on the inputs' device.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index, num_classes)
    preds, target = label_maps(preds, target, num_classes)
    c = num_classes
    if target.numel() == 0:
        return torch.zeros(c, c, dtype=torch.int64, device=target.device)
    tmin, tmax = (int(v) for v in torch.aminmax(target))
    for v in (tmin, tmax):
        if not (0 <= v < c or v == ignore_index):
            raise _bad_target_error(v, c, ignore_index)
    lo, hi = min(0, tmin), max(c - 1, tmax)
    rows = hi - lo + 1
    # Inputs that already share an index dtype are used as they are (each conversion is a pass
    # over the maps); others go to int32, which halves memory traffic against int64.
    dtype = torch.int32 if rows * c < 2**31 else torch.int64
    if preds.dtype == target.dtype and preds.dtype in (dtype, torch.int64):
        dtype = preds.dtype
    t = target.to(dtype)
    if lo != 0:
        t = t - lo
    index = torch.add(preds.to(dtype), t, alpha=c)
    hist = torch.bincount(index.flatten(), minlength=rows * c).view(rows, c)
    used = hist.sum(1) > 0
    used[-lo : -lo + c] = False
    if ignore_index is not None and lo <= ignore_index <= hi:
        used[ignore_index - lo] = False
    if bool(used.any()):
        raise _bad_target_error(int(used.nonzero()[0, 0]) + lo, c, ignore_index)
    return hist[-lo : -lo + c].to(torch.int64)


def segmentation_scores(confmat: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU, accuracy and their means from a confusion matrix (mmsegmentation's definitions).

    ``IoU_c = TP / (TP + FP + FN)``, NaN when class c is absent from both prediction and target;
    ``Acc_c = TP / (TP + FN)`` (per-class recall), NaN when c is absent from the target;
    ``mIoU`` / ``mAcc`` are means over the non-NaN classes; ``aAcc`` is the fraction of correct
    pixels. Values are in [0, 1] (not percent).

    Args:
        confmat: (C, C) counts, rows = target, columns = prediction.

    Returns:
        ``{"mIoU", "mAcc", "aAcc"}`` as 0-d float32 tensors, ``{"IoU", "Acc"}`` as (C,) float32.
    """
    if confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ValueError(f"confmat must be square (C, C), got shape {tuple(confmat.shape)}")
    cm = confmat.double()
    tp = cm.diagonal()
    area_target = cm.sum(1)
    area_pred = cm.sum(0)
    union = area_target + area_pred - tp
    nan = cm.new_tensor(float("nan"))
    iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
    acc = torch.where(area_target > 0, tp / area_target.clamp_min(1), nan)
    total = cm.sum()
    aacc = tp.sum() / total if total > 0 else nan
    return {
        "mIoU": torch.nanmean(iou).float(),
        "mAcc": torch.nanmean(acc).float(),
        "aAcc": aacc.float(),
        "IoU": iou.float(),
        "Acc": acc.float(),
    }


# --------------------------------------------------------------------------------------------
# Boundary F-score.


def seg2bmap(mask: torch.Tensor) -> torch.Tensor:
    """Boundary map of binary masks (BSDS / DAVIS ``seg2bmap``), 1 px wide, on the upper-left side.

    Pixel (y, x) is a boundary pixel iff it differs from its right, lower or lower-right
    neighbour; in the last row only the right neighbour counts, in the last column only the lower
    one, and the bottom-right pixel never is; the image border itself is no boundary.

    Shape:
        mask (..., H, W) of any dtype (nonzero = foreground) -> bool (..., H, W).
    """
    if mask.ndim < 2:
        raise ValueError(f"mask must have at least 2 dims (..., H, W), got {tuple(mask.shape)}")
    m = mask != 0
    out = torch.zeros_like(m)
    if m.shape[-1] > 0 and m.shape[-2] > 0:
        _packed.bmap_into(m, out)
    return out


def check_tolerance(tolerance: float) -> None:
    """Raise ``ValueError`` unless ``tolerance`` is a finite positive number."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
        raise ValueError(f"tolerance must be a number, got {tolerance!r}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance must be finite and positive, got {tolerance!r}")


def tolerance_radius(tolerance: float, height: int, width: int) -> float:
    """Matching radius in pixels (openseg ``bound_pix``).

    ``tolerance >= 1`` is a distance in pixels; ``tolerance < 1`` is a fraction of the image
    diagonal, rounded up: ``ceil(tolerance * sqrt(H^2 + W^2))``.
    """
    check_tolerance(tolerance)
    if tolerance >= 1:
        return float(tolerance)
    return float(math.ceil(tolerance * math.sqrt(height * height + width * width)))


def tolerance_name(tolerance: float) -> str:
    """Key suffix: ``"3px"`` for a pixel tolerance, ``"0.00088"`` for a fraction of the diagonal."""
    check_tolerance(tolerance)
    return f"{tolerance:g}px" if tolerance >= 1 else f"{tolerance:g}"


class BoundaryScores(NamedTuple):
    """Per-image, per-class boundary scores; T tolerances, N images, C classes.

    ``f``, ``precision``, ``recall`` are (T, N, C) float64; pairs with no boundary in either map
    hold P = R = F = 1. ``present`` (N, C) bool marks pairs with a boundary in at least one map.
    """

    f: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    present: torch.Tensor


def boundary_counts(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    radii: Sequence[float],
    ignore_index: int | None = 255,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boundary pixel counts per image and class, and matched counts per radius.

    Args:
        preds: class ids (N, H, W) or scores (N, C, H, W).
        target: class ids (N, H, W) in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        radii: matching radii in pixels (>= 1; see :func:`tolerance_radius`).
        ignore_index: target value whose pixels are background in both maps, or None.

    Returns:
        ``(n_pred, n_target, matched_pred, matched_target)``: (N, C), (N, C), (T, N, C), (T, N, C)
        int64, where ``matched_pred`` counts predicted boundary pixels with a target boundary
        pixel of the same class within the radius, and ``matched_target`` the reverse.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index, num_classes)
    for r in radii:
        check_tolerance(r)
        if r < 1:
            raise ValueError(f"radii are pixel distances >= 1, got {r!r}")
    preds, target = label_maps(preds, target, num_classes)
    return _checked_counts(preds, target, num_classes, [float(r) for r in radii], ignore_index)


def _checked_counts(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    radii: list[float],
    ignore_index: int | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # boundary_counts after label_maps.
    void = void_pixels(target, num_classes, ignore_index)
    return _packed.boundary_counts(preds, target, void, num_classes, radii)


def void_pixels(
    target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor | None:
    """The target's ``ignore_index`` pixels (None if there are none), after checking that every
    other value is a class id in ``[0, num_classes)``; the boundary metrics' shared target check."""
    void = None
    if ignore_index is not None and target.numel() > 0:
        void = target == ignore_index
        if not bool(void.any()):
            void = None
    if target.numel() > 0:
        checked = target if void is None else target.masked_fill(void, 0)
        lo, hi = (int(v) for v in torch.aminmax(checked))
        for v in (lo, hi):
            if not 0 <= v < num_classes:
                raise _bad_target_error(v, num_classes, ignore_index)
    return void


def boundary_scores(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    tolerances: Sequence[float],
    ignore_index: int | None = 255,
) -> BoundaryScores:
    """Boundary precision, recall and F per image, class and tolerance (DAVIS/GSCNN/SegFix).

    Per image and class c the binary maps are ``pred == c`` and ``target == c`` with
    ``ignore_index`` pixels set to background in both; boundaries by :func:`seg2bmap`; a
    predicted boundary pixel is correct if a target boundary pixel lies within Euclidean distance
    ``<= r`` (and the reverse for recall); ``F = 2PR / (P + R)`` (0 when P + R = 0). No boundary in
    either map gives P = R = F = 1; only a target boundary gives P = 1, R = 0; only a predicted one
    P = 0, R = 1 (openseg ``db_eval_boundary``).

    Args:
        preds: class ids (N, H, W) or scores (N, C, H, W).
        target: class ids (N, H, W) in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        tolerances: pixel distances (>= 1) or fractions of the image diagonal (< 1).
        ignore_index: void label of the target, or None.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index, num_classes)
    for tol in tolerances:
        check_tolerance(tol)
    preds, target = label_maps(preds, target, num_classes)
    h, w = target.shape[-2:]
    radii = [tolerance_radius(t, h, w) for t in tolerances]
    n_pred, n_target, m_pred, m_target = _checked_counts(
        preds, target, num_classes, radii, ignore_index
    )
    n_pred, n_target = n_pred.double(), n_target.double()
    one = n_pred.new_ones(())
    # With no predicted boundary nothing is wrongly predicted (P = 1); likewise R = 1 with no
    # target boundary. The other cases of the spec's table follow because the matched count is 0.
    precision = torch.where(n_pred > 0, m_pred / n_pred.clamp_min(1), one)
    recall = torch.where(n_target > 0, m_target / n_target.clamp_min(1), one)
    denom = precision + recall
    f = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), one - 1)
    return BoundaryScores(f, precision, recall, (n_pred > 0) | (n_target > 0))


def reduce_boundary_scores(
    scores: BoundaryScores, absent: str = "one"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums over images of F, P, R and the number of counted images: each (T, C).

    With ``absent="one"`` every image counts for every class; with ``"skip"`` a (image, class)
    pair with no boundary in either map is left out.
    """
    if absent not in ABSENT_MODES:
        raise ValueError(f"absent must be one of {ABSENT_MODES}, got {absent!r}")
    if absent == "one":
        weight = torch.ones_like(scores.present, dtype=torch.float64)
    else:
        weight = scores.present.double()
    return (
        (scores.f * weight).sum(1),
        (scores.precision * weight).sum(1),
        (scores.recall * weight).sum(1),
        weight.sum(0).to(torch.int64).expand(scores.f.shape[0], -1).clone(),
    )


def boundary_f_score(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    tolerance: float,
    ignore_index: int | None = 255,
    absent: str = "one",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary F-score of a batch: per-class mean over images, then mean over classes.

    The definition of :func:`boundary_scores` aggregated as in GSCNN / SegFix
    (``F_c = mean_i F_ic``, score ``= mean_c F_c``). ``absent="one"`` counts a pair with no
    boundary in either map as F = 1 (theirs); ``"skip"`` leaves such pairs out, and a class with
    no counted image is NaN and left out of the class mean.

    Returns:
        ``(mean_f, per_class_f)``: a 0-d and a (C,) float32 tensor.
    """
    if absent not in ABSENT_MODES:
        raise ValueError(f"absent must be one of {ABSENT_MODES}, got {absent!r}")
    scores = boundary_scores(preds, target, num_classes, [tolerance], ignore_index)
    f_sum, _, _, count = reduce_boundary_scores(scores, absent)
    per_class = mean_or_nan(f_sum[0], count[0])
    return torch.nanmean(per_class).float(), per_class.float()


def mean_or_nan(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count``, NaN where ``count == 0``."""
    nan = total.new_tensor(float("nan"))
    return torch.where(count > 0, total / count.clamp_min(1), nan)
