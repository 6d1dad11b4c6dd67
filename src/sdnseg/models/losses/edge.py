"""Edge targets from label maps and the two edge terms of InverseForm's training loss (Borse et
al., CVPR 2021, after GSCNN, Takikawa et al., ICCV 2019): class-balanced BCE on the edge head and
the edge attention term (cross-entropy of the segmentation on the pixels the edge head calls
boundary). Both read ``aux["edge"]`` of a :class:`~sdnseg.models.SegmentorOutput`.

The public InverseForm code applies ``log_softmax`` over the single edge channel before its
losses; that is identically 0 and leaves the edge head without gradient. Here the edge logit goes
through a sigmoid (BCE with logits), so every term reaches the edge head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.losses._common import logits_at_target
from sdnseg.models.segmentor import SegmentorOutput

EDGE = "edge"


def edge_targets(
    target: torch.Tensor, radius: int = 2, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth edges: labelled pixels with another label within ``radius`` (a square window,
    GSCNN's ``onehot_to_binary_edges`` uses the Euclidean distance), ignored pixels left out.

    Returns:
        edges (N, 1, H, W) float in {0, 1} and the labelled-pixel mask (N, 1, H, W) bool.
    """
    labels = target.long().unsqueeze(1)
    valid = labels != ignore_index
    big = torch.iinfo(torch.int32).max
    size, pad = 2 * radius + 1, radius
    high = torch.where(valid, labels, torch.full_like(labels, -1)).float()
    low = torch.where(valid, labels, torch.full_like(labels, big)).float()
    largest = F.max_pool2d(high, size, 1, pad)
    smallest = -F.max_pool2d(-low, size, 1, pad)
    edges = valid & (largest != smallest)
    return edges.to(torch.float32), valid


def edge_logits(outputs: SegmentorOutput | torch.Tensor, what: str) -> torch.Tensor:
    """``outputs.aux["edge"]``, or a ValueError naming ``what`` when the model has no edge head."""
    aux = outputs.aux if isinstance(outputs, SegmentorOutput) else {}
    if EDGE not in aux:
        raise ValueError(
            f"{what} needs the edge head's output aux['edge'], but the model gave "
            f"{sorted(aux) or 'no auxiliary outputs'}; build it with an edge head "
            "(create_model(..., edge_head=True), --model.model_overrides '{edge_head: true}')"
        )
    return aux[EDGE]


class EdgeBCELoss(nn.Module):
    """Class-balanced binary cross-entropy of the edge logits (GSCNN's ``bce2d``): edge pixels
    weigh the fraction of non-edge pixels and vice versa, averaged over labelled pixels.

    Args:
        radius: of the ground-truth edges (:func:`edge_targets`).
        balanced: weigh the classes as above (False: plain BCE).
        ignore_index: the label to ignore.

    Shape:
        outputs.aux["edge"] (N, 1, H', W'), target (N, H, W) -> scalar
    """

    aux_keys = (EDGE,)

    def __init__(self, radius: int = 2, balanced: bool = True, ignore_index: int = 255) -> None:
        super().__init__()
        self.radius, self.balanced, self.ignore_index = radius, balanced, ignore_index

    def forward(self, outputs: SegmentorOutput, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(edge_logits(outputs, type(self).__name__), target, "EdgeBCELoss")
        edges, valid = edge_targets(target, self.radius, self.ignore_index)
        weight = valid.to(logits.dtype)
        if self.balanced:
            count = valid.sum().clamp(min=1)
            positives = (edges * valid).sum() / count
            weight = weight * torch.where(edges > 0, 1 - positives, positives)
        loss = F.binary_cross_entropy_with_logits(logits, edges.to(logits), reduction="none")
        return (loss * weight).sum() / valid.sum().clamp(min=1).to(loss.dtype)


class EdgeAttentionLoss(nn.Module):
    """Cross-entropy of the segmentation logits on the pixels whose edge probability exceeds
    ``threshold`` (GSCNN's ``edge_attention``, 0.8), averaged over them; 0 if there are none.

    Shape:
        outputs.logits (N, C, H, W), outputs.aux["edge"] (N, 1, H', W'), target (N, H, W) -> scalar
    """

    aux_keys = (EDGE,)

    def __init__(self, threshold: float = 0.8, ignore_index: int = 255) -> None:
        super().__init__()
        self.threshold, self.ignore_index = threshold, ignore_index

    def forward(self, outputs: SegmentorOutput, target: torch.Tensor) -> torch.Tensor:
        edge = logits_at_target(edge_logits(outputs, type(self).__name__), target, "edge")
        logits = logits_at_target(outputs.logits, target, type(self).__name__)
        on_edge = edge.detach().sigmoid().squeeze(1) > self.threshold
        attended = torch.where(
            on_edge, target.long(), torch.full_like(target.long(), self.ignore_index)
        )
        loss = F.cross_entropy(logits, attended, ignore_index=self.ignore_index, reduction="sum")
        return loss / (attended != self.ignore_index).sum().clamp(min=1).to(loss.dtype)
