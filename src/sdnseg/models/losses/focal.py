"""Focal loss (Lin et al., ICCV 2017) for segmentation, in its sigmoid one-vs-rest form.

Each class is a binary problem on its logit: with ``p_t`` the sigmoid probability of the right
answer, ``FL = −α_t (1 − p_t)^γ log p_t``, averaged over classes and labelled pixels. This is the
form of mmsegmentation's ``FocalLoss`` and of ``segmentation_models_pytorch.losses.FocalLoss(
"multiclass")`` (the tests check the latter; ``alpha=None`` weighs positives and negatives alike).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.losses._common import logits_at_target


class FocalLoss(nn.Module):
    """Sigmoid focal loss over classes (see the module doc).

    Args:
        gamma: the focusing exponent (0 is binary cross-entropy).
        alpha: weight of the positives (``1 − alpha`` of the negatives), or None for none.
        ignore_index: the label to ignore.

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(
        self, gamma: float = 2.0, alpha: float | None = None, ignore_index: int = 255
    ) -> None:
        super().__init__()
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] or None, got {alpha}")
        self.gamma, self.alpha, self.ignore_index = gamma, alpha, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        valid = target != self.ignore_index
        safe = torch.where(valid, target.long(), torch.zeros_like(target, dtype=torch.long))
        onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        log_pt = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")  # -log p_t
        loss = (1 - torch.exp(-log_pt)).pow(self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * (self.alpha * onehot + (1 - self.alpha) * (1 - onehot))
        loss = loss * valid.unsqueeze(1)
        return loss.sum() / (valid.sum() * logits.shape[1]).clamp(min=1).to(loss.dtype)
