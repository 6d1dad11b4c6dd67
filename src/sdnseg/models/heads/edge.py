"""An edge head: one binary boundary logit per pixel, for the boundary losses of InverseForm
(Borse et al., CVPR 2021), whose public code puts such a head beside the segmentation head.

``conv3x3-BN-ReLU`` on one backbone (or neck) feature, the finest by default (stride 4 for a
ResNet), then a 1×1 conv to a single logit; the segmentor brings it to the input size and returns
it as ``aux["edge"]`` from ``forward_train`` only, so inference and export never run it.
"""

from __future__ import annotations

import torch
from torch import nn

from sdnseg.nn.sdn import conv_norm_act


class EdgeHead(nn.Module):
    """Edge logits from ``features[in_index]``.

    Args:
        in_channels: channels of that feature.
        channels: width of the 3×3 conv.
        in_index: which feature of the list to read (0: the finest).

    Shape:
        a list of features; ``features[in_index]`` (N, in_channels, h, w) -> (N, 1, h, w)
    """

    def __init__(self, in_channels: int, channels: int = 64, in_index: int = 0) -> None:
        super().__init__()
        self.in_index = in_index
        self.conv = conv_norm_act(in_channels, channels, 3, 1, nn.BatchNorm2d, nn.ReLU)
        self.logit = nn.Conv2d(channels, 1, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.logit(self.conv(features[self.in_index]))
