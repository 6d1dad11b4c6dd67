"""Lovász-softmax loss (Berman, Triki & Blaschko, CVPR 2018): a convex surrogate of 1 − IoU.

For each class ``c`` present in the labelled pixels, the errors ``|fg_c − p_c|`` are sorted in
decreasing order and dotted with the gradient of the Lovász extension of the Jaccard loss
(Alg. 1 of the paper): ``g_1 = J_1``, ``g_i = J_i − J_{i−1}`` with ``J_i = 1 − (G − F_i) / (G +
i − F_i)`` for ``G`` the class's pixels and ``F_i`` those among the first ``i`` sorted pixels. The
loss is the mean over present classes; with ``per_image`` it is computed per image and averaged.
``segmentation_models_pytorch.losses.LovaszLoss("multiclass")`` is the reference of the tests.
"""

from __future__ import annotations

import torch
from torch import nn

from sdnseg.models.losses._common import logits_at_target


def lovasz_softmax_flat(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax of labelled pixels: probs (P, C), labels (P,) -> scalar (0 if P = 0)."""
    if labels.numel() == 0:
        return probs.sum() * 0.0
    fg = (labels.unsqueeze(1) == torch.arange(probs.shape[1], device=labels.device)).to(probs)
    errors, order = (fg - probs).abs().sort(dim=0, descending=True)
    fg_sorted = fg.gather(0, order)
    total = fg_sorted.sum(dim=0)
    intersection = total - fg_sorted.cumsum(dim=0)
    union = total + (1 - fg_sorted).cumsum(dim=0)
    jaccard = 1 - intersection / union
    grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], dim=0)
    per_class = (errors * grad).sum(dim=0)
    present = total > 0
    return per_class[present].mean()


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax over the classes present (see the module doc).

    Args:
        per_image: average the loss of each image instead of one loss over the batch.
        ignore_index: the label to ignore.

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(self, per_image: bool = False, ignore_index: int = 255) -> None:
        super().__init__()
        self.per_image, self.ignore_index = per_image, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        probs = logits.softmax(dim=1).movedim(1, -1)  # (N, H, W, C)
        groups = zip(probs, target, strict=True) if self.per_image else [(probs, target)]
        losses = []
        for p, t in groups:
            valid = t != self.ignore_index
            losses.append(lovasz_softmax_flat(p[valid], t[valid].long()))
        return torch.stack(losses).mean()
