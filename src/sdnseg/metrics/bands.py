"""Boundary bands of label maps: Boundary IoU (Cheng et al., CVPR 2021) and trimap IoU.

Both metrics look only at pixels near a class boundary, measured in the chessboard (Chebyshev)
distance that a 3×3 erosion or dilation repeated ``d`` times gives:

* **Boundary IoU** of class ``c``: the *inner boundary band* of width ``d`` of the binary map
  ``labels == c`` is its pixels within distance ``d`` of a pixel that is not ``c``, the image
  border counting as "not ``c``" (the Boundary IoU API's ``mask_to_boundary``: zero-pad by one
  pixel, erode ``d`` times with a 3×3 square, subtract). Per class,
  ``BIoU_c = |P_c ∩ G_c| / |P_c ∪ G_c|`` over the bands ``P_c`` of the prediction and ``G_c`` of the
  target, with intersections and unions summed over the dataset as mIoU sums its confusion matrix.
  ``d`` is a pixel count or a fraction of the image diagonal, ``max(1, round(ratio · diag))``
  (the paper's default ratio 0.02).
* **Trimap IoU** at width ``w`` (the trimap experiments of DeepLab, Chen et al. 2016): the
  confusion matrix of the pixels within distance ``w`` of a class boundary of the *target*
  (pixels with an 8-neighbour of another label), so the IoU of the pixels near boundaries only.

All classes are banded at once, without a per-class mask: a pixel of class ``c`` lies in ``c``'s
inner band of width ``d`` exactly when it is within distance ``d − 1`` of an *edge pixel*, a pixel
with an 8-neighbour of a different label (or on the image border). Proof sketch: on a straight
chessboard path from the pixel to its nearest non-``c`` pixel, the last ``c`` pixel is such an edge
pixel; conversely any edge pixel within ``d − 1`` has a non-``c`` neighbour within ``d``. A dilation
by ``r`` is done by doubling (shifts by 1, 2, 4, … ORed in), ``O(log r)`` passes per axis.

Ignored pixels: as in :class:`~sdnseg.metrics.BoundaryFScore`, a pixel whose target is
``ignore_index`` is background for every class in *both* maps (it gets a label of its own, so its
edge bounds the classes around it, and it never counts itself).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sdnseg.metrics.functional import (
    check_ignore_index,
    check_num_classes,
    label_maps,
    void_pixels,
)

__all__ = [
    "band_radius",
    "boundary_iou_counts",
    "chessboard_dilate",
    "edge_pixels",
    "inner_boundary_bands",
    "trimap_confusion_matrices",
]


def band_radius(dilation: float, height: int, width: int) -> int:
    """Band width in pixels: ``dilation`` itself if it is ``>= 1`` (a whole number of pixels),
    else ``max(1, round(dilation · sqrt(H² + W²)))`` (the Boundary IoU API's rule)."""
    if isinstance(dilation, bool) or not isinstance(dilation, int | float):
        raise ValueError(f"dilation must be a number, got {dilation!r}")
    if not (math.isfinite(dilation) and dilation > 0):
        raise ValueError(f"dilation must be finite and positive, got {dilation!r}")
    if dilation >= 1:
        if dilation != int(dilation):
            raise ValueError(f"a dilation in pixels must be a whole number, got {dilation!r}")
        return int(dilation)
    return max(1, round(dilation * math.sqrt(height * height + width * width)))


def edge_pixels(labels: torch.Tensor, border: bool) -> torch.Tensor:
    """Pixels with an 8-neighbour of a different label; with ``border`` also every pixel on the
    image border (for which the outside counts as another label).

    Shape:
        labels (N, H, W) of any integer dtype -> bool (N, H, W)
    """
    edges = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    # Each unordered neighbour pair is compared once and marks both of its pixels.
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        h, w = labels.shape[-2] - dy, labels.shape[-1] - abs(dx)
        if h <= 0 or w <= 0:
            continue
        x0, x1 = max(0, -dx), max(0, dx)  # columns of the first pixel and of its neighbour
        differ = labels[:, :h, x0 : x0 + w] != labels[:, dy : dy + h, x1 : x1 + w]
        edges[:, :h, x0 : x0 + w] |= differ
        edges[:, dy : dy + h, x1 : x1 + w] |= differ
    if border:
        edges[:, 0, :] = edges[:, -1, :] = True
        edges[:, :, 0] = edges[:, :, -1] = True
    return edges


def _dilate_axis(mask: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    covered, step = 0, 1
    out = mask.clone()
    size = out.shape[dim]
    while covered < radius and covered < size - 1:
        shift = min(step, radius - covered)
        grown = out.clone()
        if shift < size:
            grown.narrow(dim, shift, size - shift).logical_or_(out.narrow(dim, 0, size - shift))
            grown.narrow(dim, 0, size - shift).logical_or_(out.narrow(dim, shift, size - shift))
        out = grown
        covered += shift
        step *= 2
    return out


def chessboard_dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Pixels within chessboard distance ``radius`` of a set pixel (a ``(2r+1)²`` square dilation).

    Shape:
        mask bool (..., H, W) -> bool (..., H, W)
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return mask.clone()
    return _dilate_axis(_dilate_axis(mask, radius, -1), radius, -2)


def _with_void(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """int16/int32 copies with every ignored pixel (of the target) set to the label C in both."""
    void = void_pixels(target, num_classes, ignore_index)
    dtype = torch.int16 if num_classes < 2**15 - 1 else torch.int32
    preds, target = preds.to(dtype), target.to(dtype)
    if void is not None:
        target = target.masked_fill(void, num_classes)
        preds = preds.masked_fill(void, num_classes)
    return preds, target, void


def inner_boundary_bands(labels: torch.Tensor, radius: int) -> torch.Tensor:
    """Every pixel's membership of its own label's inner boundary band of width ``radius``.

    Shape:
        labels (N, H, W) integer -> bool (N, H, W)
    """
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    return chessboard_dilate(edge_pixels(labels, border=True), radius - 1)


def boundary_iou_counts(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    dilation: float = 0.02,
    ignore_index: int | None = 255,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class intersection and union of the inner boundary bands, summed over the batch.

    Args:
        preds: class ids (N, H, W) or scores (N, C, H, W).
        target: class ids (N, H, W) in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        dilation: band width, pixels (``>= 1``) or a fraction of the image diagonal (``< 1``).
        ignore_index: the target's void label, or None.

    Returns:
        ``(intersection, union)``, each (C,) int64.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index, num_classes)
    preds, target = label_maps(preds, target, num_classes)
    c = num_classes
    if target.numel() == 0:
        zeros = torch.zeros(c, dtype=torch.int64, device=target.device)
        return zeros, zeros.clone()
    radius = band_radius(dilation, target.shape[-2], target.shape[-1])
    preds, target, _ = _with_void(preds, target, c, ignore_index)
    pred_band = inner_boundary_bands(preds, radius) & (preds < c)
    target_band = inner_boundary_bands(target, radius) & (target < c)
    # One joint histogram of (prediction's label in its band, target's label in its band), where
    # "not in a band" (and the void label) is the extra label C: row sums are the predicted
    # bands' areas, column sums the target's, the diagonal the intersections. A full-size
    # bincount is faster than gathering the bands' pixels first.
    size = c + 1
    pred_key = torch.where(pred_band, preds, c).to(torch.int32)
    target_key = torch.where(target_band, target, c).to(torch.int32)
    joint = _bincount(pred_key * size + target_key, size * size).view(size, size)
    pred_area, target_area = joint[:c].sum(1), joint[:, :c].sum(0)
    intersection = joint.diagonal()[:c]
    return intersection, pred_area + target_area - intersection


def trimap_confusion_matrices(
    preds: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    widths: Sequence[int],
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """Confusion matrices of the pixels within each width of the target's class boundaries.

    One pass over the data for all widths: the band grows from the smallest width to the largest.
    Ignored target pixels count as a label of their own (their edge is a boundary) but are never
    scored.

    Args:
        preds: class ids (N, H, W) or scores (N, C, H, W).
        target: class ids (N, H, W) in ``[0, C)`` or ``ignore_index``.
        num_classes: C.
        widths: band half-widths in pixels (``>= 1``), e.g. ``(1, 2, 4, 8, 16, 32)``.
        ignore_index: the target's void label, or None.

    Returns:
        (len(widths), C, C) int64, rows = target class, columns = prediction.
    """
    check_num_classes(num_classes)
    check_ignore_index(ignore_index, num_classes)
    check_widths(widths)
    preds, target = label_maps(preds, target, num_classes)
    c = num_classes
    out = torch.zeros(len(widths), c, c, dtype=torch.int64, device=target.device)
    if target.numel() == 0:
        return out
    preds, target, void = _with_void(preds, target, c, ignore_index)
    index = (target.to(torch.int32) * c + preds.clamp_max(c - 1).to(torch.int32)).flatten(1)
    scored = (target < c).flatten(1)
    band = edge_pixels(target, border=False)
    done = 0  # the band holds the edge pixels dilated by this much
    for rank in sorted(range(len(widths)), key=lambda i: widths[i]):
        # Within w pixels of a boundary: within w - 1 of an edge pixel (dilations add up).
        if widths[rank] - 1 > done:
            band = chessboard_dilate(band, widths[rank] - 1 - done)
            done = widths[rank] - 1
        selected = torch.where(band.flatten(1) & scored, index, c * c)
        out[rank] = _bincount(selected, c * c + 1)[: c * c].view(c, c)
    return out


def _bincount(values: torch.Tensor, size: int) -> torch.Tensor:
    return torch.bincount(values.flatten(), minlength=size)


def check_widths(widths: Sequence[int]) -> None:
    """Raise ``ValueError`` unless ``widths`` is a non-empty sequence of whole numbers >= 1."""
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths must be whole numbers of pixels >= 1, got {widths!r}")
