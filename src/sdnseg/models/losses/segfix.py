"""SegFix's training loss (Yuan et al., ECCV 2020): binary cross-entropy of the boundary map and
cross-entropy of the 8 directions on the boundary pixels, each class-balanced as openseg.pytorch's
``SegFixLoss`` does (a class weighs ``1 − its share of the pixels the term averages over``; the
mean is the weighted one of ``F.cross_entropy(weight=...)``).

The targets come from the label maps (:func:`~sdnseg.data.segfix_targets.segfix_target_maps`),
at the masks' size; the logits are resized to it. openseg trains the directions on the pixels its
own boundary head calls boundary; here, as the paper states, on the ground-truth boundary pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.data.segfix_targets import MAX_DISTANCE, NUM_DIRECTIONS, segfix_target_maps
from sdnseg.models.losses._common import logits_at_target
from sdnseg.models.segfix import SegFixOutput

__all__ = ["SegFixLoss", "balanced_weights"]


def balanced_weights(target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """openseg's class weights: ``1 − count_c / Σ count`` over the labelled pixels of ``target``;
    all ones when fewer than two classes are present (the balanced mean would be 0 / 0)."""
    valid = target[target != ignore_index]
    counts = torch.bincount(valid.flatten(), minlength=num_classes)[:num_classes].float()
    if int((counts > 0).sum()) < 2:
        return torch.ones(num_classes, device=target.device)
    return 1 - counts / counts.sum()


class SegFixLoss(nn.Module):
    """``boundary_weight · BCE(boundary) + direction_weight · CE(direction on boundary pixels)``.

    Args:
        max_distance: the boundary's reach from a segment edge, in pixels (openseg: 5).
        boundary_weight, direction_weight: the two terms' weights (openseg: 1 and 1).
        balanced: weigh the classes of each term as openseg (False: plain means).
        ignore_index: the label to ignore.

    Shape:
        outputs: :class:`~sdnseg.models.SegFixOutput` of (N, 1, H', W') and (N, 8, H', W');
        target (N, H, W) labels -> scalar
    """

    def __init__(
        self,
        max_distance: float = MAX_DISTANCE,
        boundary_weight: float = 1.0,
        direction_weight: float = 1.0,
        balanced: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if not max_distance > 0:
            raise ValueError(f"max_distance must be positive, got {max_distance}")
        self.max_distance = max_distance
        self.boundary_weight, self.direction_weight = boundary_weight, direction_weight
        self.balanced = balanced
        self.ignore_index = ignore_index

    def targets(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The boundary and direction maps of ``target`` (N, H, W) this loss trains towards."""
        return segfix_target_maps(target, self.max_distance, self.ignore_index)

    def terms(
        self,
        outputs: SegFixOutput,
        target: torch.Tensor,
        maps: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The unweighted boundary and direction losses; ``maps`` are :meth:`targets` of
        ``target`` when already computed."""
        if not isinstance(outputs, SegFixOutput):
            raise ValueError(
                f"SegFixLoss expects a SegFixOutput (boundary, direction) of a SegFix network "
                f"(create_model('segfix_r18', ...)), got {type(outputs).__name__}"
            )
        boundary_logit = logits_at_target(outputs.boundary, target, "SegFixLoss")[:, 0]
        direction_logits = logits_at_target(outputs.direction, target, "SegFixLoss")
        if direction_logits.shape[1] != NUM_DIRECTIONS:
            raise ValueError(
                f"SegFixLoss expects {NUM_DIRECTIONS} direction logits, got "
                f"{direction_logits.shape[1]}"
            )
        boundary, direction = self.targets(target) if maps is None else maps
        ignore = self.ignore_index
        labelled = boundary != ignore
        # The BCE of one logit z equals the 2-way cross-entropy of the logits (0, z).
        weight = (
            balanced_weights(boundary, 2, ignore) if self.balanced else boundary_logit.new_ones(2)
        )
        pixel_weight = weight[torch.where(labelled, boundary, 0)] * labelled
        bce = F.binary_cross_entropy_with_logits(
            boundary_logit, (boundary == 1).to(boundary_logit.dtype), reduction="none"
        )
        boundary_loss = (bce * pixel_weight).sum() / pixel_weight.sum().clamp(min=1e-12)
        on_boundary = torch.where(boundary == 1, direction, torch.full_like(direction, ignore))
        if not (on_boundary != ignore).any():  # no boundary pixel in the batch
            return boundary_loss, direction_logits.sum() * 0
        weight = (
            balanced_weights(on_boundary, NUM_DIRECTIONS, ignore).to(direction_logits.dtype)
            if self.balanced
            else None
        )
        direction_loss = F.cross_entropy(
            direction_logits, on_boundary, weight=weight, ignore_index=ignore
        )
        return boundary_loss, direction_loss

    def forward(self, outputs: SegFixOutput, target: torch.Tensor) -> torch.Tensor:
        boundary_loss, direction_loss = self.terms(outputs, target)
        return self.boundary_weight * boundary_loss + self.direction_weight * direction_loss
