"""Soft Dice loss for multi-class segmentation (Milletari et al., V-Net, 3DV 2016).

Per class ``c``, over every labelled pixel of the batch: ``dice_c = (2·Σ p_c t_c + smooth) /
(Σ p_c + Σ t_c + smooth)`` with ``p`` the softmax and ``t`` the one-hot target; the loss is the
mean over all classes of ``1 − dice_c``, where a class absent from the target adds 0. This is
``segmentation_models_pytorch.losses.DiceLoss("multiclass")`` (the tests check it), whose
``smooth`` is half of ours: it adds ``smooth`` to ``Σ p t`` and to ``(Σ p + Σ t) / 2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.losses._common import logits_at_target


class DiceLoss(nn.Module):
    """Soft Dice loss over classes (see the module doc).

    Args:
        smooth: added to numerator and denominator.
        eps: floor of the denominator.
        ignore_index: the label to ignore (its pixels count nowhere).

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(self, smooth: float = 0.0, eps: float = 1e-7, ignore_index: int = 255) -> None:
        super().__init__()
        self.smooth, self.eps, self.ignore_index = smooth, eps, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        num_classes = logits.shape[1]
        valid = (target != self.ignore_index).unsqueeze(1)
        probs = logits.softmax(dim=1) * valid
        safe = torch.where(
            valid.squeeze(1), target.long(), torch.zeros_like(target, dtype=torch.long)
        )
        onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(probs.dtype) * valid
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        cardinality = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(self.eps)
        present = onehot.sum(dims) > 0
        return ((1 - dice) * present).mean()
