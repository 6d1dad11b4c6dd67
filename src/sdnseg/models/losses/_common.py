"""What every pixel loss does first: check the shapes, bring the logits to the target's size."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logits_at_target(logits: torch.Tensor, target: torch.Tensor, what: str) -> torch.Tensor:
    """``logits`` (N, C, H', W') resized bilinearly to ``target`` (N, H, W), as mmseg does.

    Raises:
        ValueError: naming ``what`` (the loss) and both shapes when they do not fit.
    """
    if target.dim() != 3 or logits.dim() != 4 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"{what} expects logits (N, C, H, W) and target (N, H, W), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def mean_over(values: torch.Tensor, mask: torch.Tensor, avg_non_ignore: bool) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is true, over the labelled pixels (``avg_non_ignore``)
    or over all pixels (mmseg's default); 0, not NaN, when nothing is labelled."""
    total = torch.where(mask, values, values.new_zeros(())).sum()
    count = mask.sum() if avg_non_ignore else torch.tensor(mask.numel(), device=mask.device)
    return total / count.clamp(min=1).to(total.dtype)
