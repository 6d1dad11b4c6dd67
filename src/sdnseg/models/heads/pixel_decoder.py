"""MaskFormer's per-pixel embedding module (Cheng, Schwing and Kirillov, *Per-Pixel
Classification is Not All You Need for Semantic Segmentation*, NeurIPS 2021, Sec. 3.2): the FPN
of its ``BasePixelDecoder``.

Unlike Semantic FPN's :class:`~sdnseg.models.heads.FPN`, every conv is bias-free and followed by
GroupNorm (32 groups); the coarsest level has no lateral conv, only a 3×3 conv-GN-ReLU on the
backbone feature; each finer level adds its 1×1 conv-GN lateral to the nearest-upsampled level
above and applies a 3×3 conv-GN-ReLU. A 3×3 conv (with bias) on the finest output gives the
per-pixel embeddings ``E_pixel`` (``mask_dim`` wide, at stride 4 for a ResNet). Convs start
from detectron2's ``c2_xavier_fill`` (Kaiming uniform with ``a=1``, zero bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PixelDecoder"]


def _xavier_fill(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _conv_gn(c_in: int, c_out: int, kernel_size: int, groups: int, relu: bool) -> nn.Sequential:
    conv = _xavier_fill(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False))
    layers: list[nn.Module] = [conv, nn.GroupNorm(groups, c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class PixelDecoder(nn.Module):
    """FPN over the backbone levels -> per-pixel embeddings at the finest level's stride.

    Args:
        in_channels: channels of each backbone level, finest first.
        conv_dim: width of the FPN (MaskFormer: 256).
        mask_dim: width of the per-pixel embeddings (MaskFormer: 256).
        norm_groups: GroupNorm groups (32); must divide ``conv_dim``.

    Shape:
        a list of L features, the first (N, C_0, h, w) -> (N, mask_dim, h, w)
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        if conv_dim % norm_groups:
            raise ValueError(f"conv_dim {conv_dim} is not a multiple of norm_groups {norm_groups}")
        *finer, coarsest = in_channels
        self.num_levels = len(in_channels)
        self.lateral_convs = nn.ModuleList(
            _conv_gn(c, conv_dim, 1, norm_groups, False) for c in finer
        )
        self.output_convs = nn.ModuleList(
            _conv_gn(conv_dim, conv_dim, 3, norm_groups, True) for _ in finer
        )
        self.top_conv = _conv_gn(coarsest, conv_dim, 3, norm_groups, True)
        self.mask_features = _xavier_fill(nn.Conv2d(conv_dim, mask_dim, 3, padding=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != self.num_levels:
            raise ValueError(
                f"PixelDecoder expects {self.num_levels} features, got {len(features)}"
            )
        y = self.top_conv(features[-1])
        for i in range(self.num_levels - 2, -1, -1):
            lateral = self.lateral_convs[i](features[i])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest")
            y = self.output_convs[i](y)
        return self.mask_features(y)
