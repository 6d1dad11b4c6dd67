"""The SegFix network (Yuan et al., ECCV 2020): a backbone and a light head that predicts, for
every pixel, whether it lies on a boundary and which way its segment's interior lies.

The head is openseg.pytorch's ``SegFix_HRNet`` head: every backbone level resized (bilinearly) to
the finest one and concatenated, then two branches of ``conv1×1 → BN → ReLU → conv1×1``, one to a
boundary logit (1 channel: binary cross-entropy, where openseg has a 2-way softmax) and one to the
logits of the 8 directions of :data:`sdnseg.data.segfix_targets.DIRECTIONS`. A 1×1 convolution
commutes with bilinear resizing, so the first convolution of both branches is computed here on
each level at its own resolution and the results are resized and summed, which is the same
function as convolving the concatenation at the finest resolution, for a fraction of the cost
(``tests/models/test_segfix.py`` checks the two against each other).

The net is class-agnostic; training and refinement are in :class:`~sdnseg.models.losses.SegFixLoss`
and :mod:`sdnseg.inference.segfix`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.data.segfix_targets import NUM_DIRECTIONS
from sdnseg.models.padding import crop_padding, pad_to_multiple

__all__ = ["SegFixHead", "SegFixNet", "SegFixOutput"]


class SegFixOutput(NamedTuple):
    """What :class:`SegFixNet` returns: the boundary logit (N, 1, H, W) and the direction logits
    (N, 8, H, W)."""

    boundary: torch.Tensor
    direction: torch.Tensor


class SegFixHead(nn.Module):
    """Boundary and direction logits from a list of features, at the finest feature's size.

    Args:
        in_channels: channels of each level, finest first.
        channels: width of each branch (openseg: 256).
        num_directions: direction classes (8).
        norm_layer, act_layer: after the first convolution of each branch.

    Shape:
        a list of features, the first (N, in_channels[0], h, w) -> :class:`SegFixOutput` of
        (N, 1, h, w) and (N, num_directions, h, w)
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 256,
        num_directions: int = NUM_DIRECTIONS,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.channels = channels
        # Row block [:channels] of each projection starts the boundary branch, the rest the
        # direction branch: one BN over both is two BNs, its channels are independent.
        self.projections = nn.ModuleList(
            nn.Conv2d(c, 2 * channels, 1, bias=False) for c in in_channels
        )
        self.norm = norm_layer(2 * channels)
        self.act = act_layer()
        self.boundary = nn.Conv2d(channels, 1, 1)
        self.direction = nn.Conv2d(channels, num_directions, 1)

    def forward(self, features: list[torch.Tensor]) -> SegFixOutput:
        if len(features) != len(self.projections):
            raise ValueError(f"expected {len(self.projections)} features, got {len(features)}")
        size = features[0].shape[-2:]
        x = 0
        for projection, feature in zip(self.projections, features, strict=True):
            y = projection(feature)
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            x = x + y
        boundary, direction = self.act(self.norm(x)).split(self.channels, dim=1)
        return SegFixOutput(self.boundary(boundary), self.direction(direction))


class SegFixNet(nn.Module):
    """Backbone + :class:`SegFixHead`, outputs at the input size (the padded-forward rule of
    :mod:`sdnseg.models.padding`, as a :class:`~sdnseg.models.Segmentor`).

    Args:
        backbone: returns a list of features and has ``reductions`` (a
            :class:`~sdnseg.models.Backbone`).
        head: a :class:`SegFixHead` on those features.
        num_classes: the class count of the label maps it was trained on. SegFix itself is
            class-agnostic and refines label maps of any class set; the count is kept so that the
            training module checks it against the data and records it in the checkpoint.
        size_divisor: the input is padded to a multiple of it; default the largest reduction.

    Attributes:
        config: the :class:`~sdnseg.models.ModelConfig` if built by ``create_model``, else None.

    Shape:
        forward: (N, 3, H, W) -> :class:`SegFixOutput` of (N, 1, H, W) and (N, 8, H, W), in
        training and evaluation mode alike (``forward_train`` is the same).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        size_divisor: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.size_divisor = size_divisor if size_divisor is not None else max(backbone.reductions)
        self.config = None  # the ModelConfig, set by sdnseg.models.create_model

    def forward(self, images: torch.Tensor) -> SegFixOutput:
        padded = pad_to_multiple(images, self.size_divisor)
        output = self.head(self.backbone(padded))
        padded_size, size = padded.shape[-2:], images.shape[-2:]
        return SegFixOutput(*(crop_padding(x, padded_size, size) for x in output))

    def forward_train(self, images: torch.Tensor) -> SegFixOutput:
        """The same as ``forward`` (for the training module's contract)."""
        return self(images)
