"""Segmentation losses. Heads return logits; the engine calls these.

mmseg's ``CrossEntropyLoss`` (1.x) averages over *all* pixels by default
(``avg_non_ignore=False``: ignored pixels add zero to the sum but count in the mean), unlike
PyTorch's ``F.cross_entropy``, which averages over the non-ignored ones. Both are offered; the
default follows mmseg.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sdnseg.models.losses._common import logits_at_target
from sdnseg.models.segmentor import SegmentorOutput


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = 255,
    avg_non_ignore: bool = False,
) -> torch.Tensor:
    """Pixel-wise cross-entropy with an ignored label.

    Logits of another spatial size than ``target`` are resized bilinearly (``align_corners=False``)
    to it first, as mmseg does. A batch in which every pixel is ignored gives 0, not NaN.

    Args:
        logits: unnormalised class scores.
        target: class indices; ``ignore_index`` marks pixels without a label.
        ignore_index: the label to ignore.
        avg_non_ignore: average over labelled pixels only (PyTorch's convention) instead of all
            pixels (mmseg's default).

    Shape:
        logits (N, C, H', W'), target (N, H, W) -> scalar
    """
    logits = logits_at_target(logits, target, "cross_entropy")
    target = target.long()
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum() if avg_non_ignore else target.new_tensor(target.numel())
    return loss / count.clamp(min=1).to(loss.dtype)


def segmentation_loss(
    outputs: torch.Tensor | SegmentorOutput,
    target: torch.Tensor,
    ignore_index: int = 255,
    aux_weight: float = 0.4,
    avg_non_ignore: bool = False,
) -> torch.Tensor:
    """Cross-entropy of the logits plus ``aux_weight`` × that of the auxiliary head's logits.

    Args:
        outputs: a :class:`~sdnseg.models.SegmentorOutput` (``Segmentor.forward_train``), whose
            ``aux`` may hold ``"aux"`` (the auxiliary head's logits), or a logits tensor.
        target: class indices.
        ignore_index, avg_non_ignore: see :func:`cross_entropy`.
        aux_weight: weight of the auxiliary head's loss (0.4 in the FCN configs).

    Raises:
        ValueError: ``outputs.aux`` holds an output this loss does not know how to weight.

    Shape:
        logits (N, C, H, W), target (N, H, W) -> scalar
    """
    if isinstance(outputs, torch.Tensor):
        outputs = SegmentorOutput(outputs)
    unknown = set(outputs.aux) - {"aux"}
    if unknown:
        raise ValueError(
            f"segmentation_loss knows the auxiliary output 'aux' only, got {sorted(outputs.aux)}"
        )
    loss = cross_entropy(outputs.logits, target, ignore_index, avg_non_ignore)
    if "aux" in outputs.aux and aux_weight:
        loss = loss + aux_weight * cross_entropy(
            outputs.aux["aux"], target, ignore_index, avg_non_ignore
        )
    return loss
