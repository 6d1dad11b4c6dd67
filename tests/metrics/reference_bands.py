"""Independent references of the band metrics: the Boundary IoU API's ``mask_to_boundary``
(OpenCV erosion) per class, and the trimap band from scipy's chessboard distance transform.
``benchmarks/metrics_speed.py`` times them as its anchors."""

import cv2
import numpy as np
from scipy import ndimage


def mask_to_boundary(mask: np.ndarray, dilation: int) -> np.ndarray:
    """The Boundary IoU API's inner band: pad by one zero pixel, erode with 3x3, subtract."""
    h, w = mask.shape
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1 : h + 1, 1 : w + 1]
    return mask - eroded


def opencv_boundary_iou_counts(preds, target, num_classes, dilation, ignore_index):
    inter, union = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    for p, t in zip(preds.numpy(), target.numpy(), strict=True):
        keep = t != ignore_index  # void is background in both maps
        for c in range(num_classes):
            pb = mask_to_boundary(((p == c) & keep).astype(np.uint8), dilation).astype(bool)
            tb = mask_to_boundary(((t == c) & keep).astype(np.uint8), dilation).astype(bool)
            inter[c] += (pb & tb).sum()
            union[c] += (pb | tb).sum()
    return inter, union


def scipy_trimap(preds, target, num_classes, width, ignore_index):
    out = np.zeros((num_classes, num_classes), np.int64)
    for p, t in zip(preds.numpy(), target.numpy(), strict=True):
        # Boundary pixels: an 8-neighbour holds another label (void is a label here).
        padded = np.pad(t, 1, mode="edge")
        edge = np.zeros(t.shape, bool)
        h, w = t.shape
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                edge |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != t
        distance = ndimage.distance_transform_cdt(~edge, metric="chessboard")
        keep = (distance <= width - 1) & (t != ignore_index)
        np.add.at(out, (t[keep], p[keep]), 1)
    return out
