"""Online hard example mining for cross-entropy, as mmsegmentation's ``OHEMPixelSampler``.

mmseg (``mmseg/structures/sampler/ohem_pixel_sampler.py``, after Shrivastava et al., CVPR 2016 and
its use in PSPNet/OCNet): with ``thresh`` set, the labelled pixels are sorted by the softmax
probability of their true class; the threshold is ``max(thresh, p[min(kept, n - 1)])`` with
``kept = min_kept × batch size``, and the pixels whose probability is below it are kept (weight
1), the others dropped (weight 0). Without ``thresh``, the ``kept`` pixels of largest loss are
kept. The loss is then the cross-entropy weighted by that mask, averaged over all pixels as mmseg's
CrossEntropyLoss does (or over the labelled ones, ``avg_non_ignore``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.losses._common import logits_at_target, mean_over


@torch.no_grad()
def ohem_keep_mask(
    logits: torch.Tensor,
    target: torch.Tensor,
    thresh: float | None = 0.7,
    min_kept: int = 100000,
    ignore_index: int = 255,
) -> torch.Tensor:
    """The pixels OHEM keeps: a bool (N, H, W) map, False on ignored pixels.

    Shape:
        logits (N, C, H, W) at the target's size, target (N, H, W) -> (N, H, W) bool
    """
    target = target.long()
    valid = target != ignore_index
    keep = torch.zeros_like(valid)
    batch_kept = min_kept * target.shape[0]
    safe = torch.where(valid, target, torch.zeros_like(target))
    if thresh is not None:
        prob = logits.float().softmax(dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
        valid_prob = prob[valid]
        sorted_prob = valid_prob.sort().values
        threshold = thresh
        if sorted_prob.numel():
            threshold = max(threshold, float(sorted_prob[min(batch_kept, sorted_prob.numel() - 1)]))
        keep[valid] = valid_prob < threshold
    else:
        loss = F.cross_entropy(logits.float(), safe, reduction="none")[valid]
        order = loss.sort(descending=True).indices[:batch_kept]
        kept = torch.zeros_like(loss, dtype=torch.bool)
        kept[order] = True
        keep[valid] = kept
    return keep


class OHEMCrossEntropyLoss(nn.Module):
    """Cross-entropy over the hard pixels only (see the module doc; mmseg's defaults).

    Args:
        thresh: probability below which a pixel is hard; None ranks by loss instead.
        min_kept: pixels kept per image at least (mmseg: 100000, for 512×1024 crops).
        ignore_index: the label to ignore.
        avg_non_ignore: average over labelled pixels instead of all pixels.

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(
        self,
        thresh: float | None = 0.7,
        min_kept: int = 100000,
        ignore_index: int = 255,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__()
        if min_kept < 1:
            raise ValueError(f"min_kept must be >= 1, got {min_kept}")
        self.thresh, self.min_kept = thresh, min_kept
        self.ignore_index, self.avg_non_ignore = ignore_index, avg_non_ignore

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        keep = ohem_keep_mask(logits, target, self.thresh, self.min_kept, self.ignore_index)
        safe = torch.where(keep, target.long(), torch.zeros_like(target, dtype=torch.long))
        loss = F.cross_entropy(logits, safe, reduction="none")
        # Dropped pixels add zero to the sum but, as in mmseg, count in the mean.
        loss = torch.where(keep, loss, loss.new_zeros(()))
        return mean_over(loss, target.long() != self.ignore_index, self.avg_non_ignore)
