"""Boundary loss of Kervadec et al., "Boundary loss for highly unbalanced segmentation"
(MIDL 2019; MedIA 2021).

``L_B = mean over pixels and classes of φ_c(p) · s_c(p)`` with ``s`` the softmax and ``φ_c`` the
signed distance map of the ground-truth region of class ``c``: outside it the Euclidean distance to
the region, inside it ``−(distance to the outside − 1)`` (the authors' ``one_hot2dist``), 0 for a
class absent from the image. The loss is lowest when the predicted mass sits inside the true
regions; the paper pairs it with a regional loss (Dice or cross-entropy) and raises its weight
during training — here through :class:`~sdnseg.models.losses.CombinedLoss` weights.

The distance maps come from ``scipy.ndimage.distance_transform_edt`` on the CPU (the target needs
no gradient). Ignored pixels are outside every class for the distances and are left out of the
mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import nn

from sdnseg.models.losses._common import logits_at_target


def signed_distance_maps(
    target: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> torch.Tensor:
    """φ of every class of every image: (N, H, W) labels -> (N, C, H, W) float32 (see above)."""
    labels = target.detach().cpu().numpy()
    maps = np.zeros((labels.shape[0], num_classes, *labels.shape[1:]), dtype=np.float32)
    for n, label in enumerate(labels):
        for c in range(num_classes):
            inside = label == c
            if not inside.any() or inside.all():  # no region, or no boundary to measure from
                continue
            outside = ~inside
            # edt gives each nonzero pixel its distance to the nearest zero pixel.
            maps[n, c] = (
                distance_transform_edt(outside) * outside
                - (distance_transform_edt(inside) - 1) * inside
            )
    return torch.from_numpy(maps).to(target.device)


class BoundaryLoss(nn.Module):
    """Kervadec et al.'s boundary loss (see the module doc).

    Args:
        classes: the classes summed over (the paper leaves out the background); None: all.
        ignore_index: the label to ignore.

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(self, classes: Sequence[int] | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.classes = list(classes) if classes is not None else None
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        num_classes = logits.shape[1]
        phi = signed_distance_maps(target, num_classes, self.ignore_index).to(logits.dtype)
        product = logits.softmax(dim=1) * phi
        if self.classes is not None:
            bad = [c for c in self.classes if not 0 <= c < num_classes]
            if bad:
                raise ValueError(f"BoundaryLoss classes {bad} outside [0, {num_classes})")
            product = product[:, self.classes]
        valid = (target != self.ignore_index).unsqueeze(1)
        count = valid.sum() * product.shape[1]
        return (product * valid).sum() / count.clamp(min=1).to(product.dtype)
