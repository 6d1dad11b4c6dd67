"""SegFix's training targets from a label map (Yuan et al., "SegFix: Model-Agnostic Boundary
Refinement for Segmentation", ECCV 2020; openseg.pytorch's ``dt_offset_generator``).

For every labelled pixel ``p`` of class ``c``, the Euclidean distance transform of the mask
``labels == c`` (``scipy.ndimage.distance_transform_edt``, one per class present, as openseg)
gives ``d(p)``, the distance to the nearest pixel ``q`` of another label, i.e. to the edge of the
segment ``p`` lies in, and (``return_indices``) that pixel ``q``. Ignored pixels count as another
label, so the edge of a void region is an edge; the image border is not. Then:

- **boundary** ``0 < d(p) <= max_distance``: the pixels within ``max_distance`` pixels of a segment
  edge, on both sides of it (openseg's ``dt_max_distance = 5``; a pixel next to another label has
  ``d = 1``);
- **direction**: the gradient of ``d``, ``(p − q) / |p − q|``, which points from the nearest edge
  into the segment's interior, quantised to the nearest of the 8 directions of :data:`DIRECTIONS`
  (the paper's choice; openseg also offers 4, 16 and 32). openseg differentiates ``d`` with a
  Sobel-like filter instead; the nearest-pixel vector is the exact gradient and is defined at
  every labelled pixel, where the filtered one vanishes on the ridge of a thin segment.

A class that covers every labelled pixel has no edge: its pixels are not boundary and have no
direction. Ignored pixels get ``ignore_index`` in both maps.

Direction ``k`` is the angle ``−180° + 45°·k`` of ``atan2(dh, dw)`` (rows down, columns right),
and :data:`DIRECTIONS` holds the offset ``(dh, dw)`` each means: 0 left, 1 up-left, 2 up,
3 up-right, 4 right, 5 down-right, 6 down, 7 down-left (openseg's ``label_to_vector_mapping[8]``).
Refinement moves a boundary pixel's label lookup that way (:mod:`sdnseg.inference.segfix`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

__all__ = [
    "DIRECTIONS",
    "MAX_DISTANCE",
    "NUM_DIRECTIONS",
    "SegFixTargets",
    "quantize_directions",
    "segfix_target_maps",
    "segfix_targets",
]

# (dh, dw) of direction k = angle -180 + 45 k of atan2(dh, dw).
DIRECTIONS = np.array(
    [(0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1)], dtype=np.int64
)
NUM_DIRECTIONS = len(DIRECTIONS)
MAX_DISTANCE = 5.0  # openseg's dt_max_distance


class SegFixTargets(NamedTuple):
    """The targets of one label map (H, W).

    Attributes:
        distance: float32, the distance to the nearest pixel of another label; ``inf`` where the
            image holds no other label, 0 at ignored pixels.
        boundary: int64, 1 where ``0 < distance <= max_distance``, else 0; ``ignore_index`` at
            ignored pixels.
        direction: int64, the direction (0–7, :data:`DIRECTIONS`) into the pixel's segment at every
            labelled pixel with an edge; ``ignore_index`` at ignored pixels and where there is none.
    """

    distance: np.ndarray
    boundary: np.ndarray
    direction: np.ndarray


def quantize_directions(dh: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """The nearest of the 8 directions (0–7, :data:`DIRECTIONS`) to the vectors ``(dh, dw)``.

    Bins are 45° wide and centred on the directions; vectors of integer components never fall on
    a bin edge (``tan 22.5°`` is irrational), so pixel vectors have no ties.
    """
    angle = np.degrees(np.arctan2(dh, dw))
    return np.floor((angle + 180.0 + 22.5) / 45.0).astype(np.int64) % NUM_DIRECTIONS


def _check_labels(labels: np.ndarray, what: str) -> None:
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{what} must be an integer label map (H, W), got {labels.dtype} {labels.shape}"
        )


def segfix_targets(
    labels: np.ndarray, max_distance: float = MAX_DISTANCE, ignore_index: int = 255
) -> SegFixTargets:
    """Distance, boundary and direction maps of one label map (see the module doc).

    Args:
        labels: integer label map (H, W).
        max_distance: the boundary's reach from an edge, in pixels (openseg: 5).
        ignore_index: the unlabelled value.

    Raises:
        ValueError: ``labels`` is not a 2-D integer array, or ``max_distance`` is not positive.
    """
    labels = np.asarray(labels)
    _check_labels(labels, "labels")
    if not max_distance > 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    height, width = labels.shape
    distance = np.full((height, width), np.inf, dtype=np.float32)
    vectors = np.zeros((2, height, width), dtype=np.int64)
    for value in np.unique(labels):
        if value == ignore_index:
            continue
        inside = labels == value
        # The transform of the class's bounding box grown by one pixel is exact: the nearest
        # outside pixel of a pixel in the box is never farther than the box's outer ring.
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, height)
        left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, width)
        box = inside[top:bottom, left:right]
        if box.all():  # the class fills the image: no edge to measure from
            continue
        dist, (near_h, near_w) = distance_transform_edt(box, return_indices=True)
        ph, pw = np.nonzero(box)
        distance[ph + top, pw + left] = dist[ph, pw]
        vectors[0, ph + top, pw + left] = ph - near_h[ph, pw]
        vectors[1, ph + top, pw + left] = pw - near_w[ph, pw]
    labelled = labels != ignore_index
    boundary = np.where(labelled, (distance <= max_distance).astype(np.int64), ignore_index)
    direction = np.where(
        labelled & np.isfinite(distance), quantize_directions(vectors[0], vectors[1]), ignore_index
    )
    distance[~labelled] = 0.0
    return SegFixTargets(distance, boundary, direction)


def segfix_target_maps(
    masks: torch.Tensor, max_distance: float = MAX_DISTANCE, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary and direction maps of a batch of label maps, on the masks' device.

    The transforms run in scipy on the CPU (the targets need no gradient).

    Shape:
        masks (N, H, W) -> boundary (N, H, W) int64 {0, 1, ignore_index}, direction (N, H, W)
        int64 {0..7, ignore_index}
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W) label maps, got {tuple(masks.shape)}")
    labels = masks.detach().cpu().numpy()
    targets = [segfix_targets(label, max_distance, ignore_index) for label in labels]
    boundary = torch.from_numpy(np.stack([t.boundary for t in targets]))
    direction = torch.from_numpy(np.stack([t.direction for t in targets]))
    return boundary.to(masks.device), direction.to(masks.device)
