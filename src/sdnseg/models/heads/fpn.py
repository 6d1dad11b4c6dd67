"""Semantic FPN (Kirillov et al., CVPR 2019): an FPN and mmseg's ``FPNHead`` merged at 1/4.

The FPN is mmseg's with ``norm_cfg=None``: lateral 1×1 convs with bias, top-down nearest
upsampling to the next level's exact size and addition, 3×3 output convs with bias, no norm, no
activation, Xavier uniform init. Each scale head then brings its level to the finest stride by
``max(1, log2(s / s0))`` conv-BN-ReLU layers, each followed by a bilinear ×2 upsampling except at
the finest level; the levels are summed (resized to the finest map, so odd sizes work) and
classified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.heads.fcn import Classifier
from sdnseg.nn.sdn import conv_norm_act, resize_like


class FPN(nn.Module):
    """Feature pyramid network without extra levels.

    Args:
        in_channels: channels of each input level, finest first.
        out_channels: channels of every output level.

    Shape:
        a list of L features -> a list of L features with ``out_channels``, same spatial sizes.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral_convs):
            raise ValueError(f"expected {len(self.lateral_convs)} features, got {len(features)}")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            top = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + top
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]


class SemanticFPNHead(nn.Module):
    """FPN + scale heads + classifier; logits at the finest input stride (1/4 for a ResNet).

    Args:
        in_channels: channels of the backbone levels, finest first.
        num_classes: output classes.
        feature_strides: stride of each level (e.g. ``Backbone.reductions``), increasing.
        fpn_channels: width of the FPN outputs.
        channels: width of the scale heads.
        dropout: of the classifier.
        norm_layer, act_layer: of the scale heads' convs.

    Shape:
        a list of L features -> (N, num_classes, H / feature_strides[0], W / feature_strides[0])
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        feature_strides: Sequence[int] = (4, 8, 16, 32),
        fpn_channels: int = 256,
        channels: int = 128,
        dropout: float = 0.1,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if len(feature_strides) != len(in_channels):
            raise ValueError(
                f"feature_strides {list(feature_strides)} and in_channels {list(in_channels)} "
                "differ in length"
            )
        if list(feature_strides) != sorted(feature_strides):
            raise ValueError(f"feature_strides must increase, got {list(feature_strides)}")
        self.num_classes = num_classes
        self.fpn = FPN(in_channels, fpn_channels)
        self.scale_heads = nn.ModuleList()
        for stride in feature_strides:
            layers: list[nn.Module] = []
            num_convs = max(1, int(math.log2(stride) - math.log2(feature_strides[0])))
            for k in range(num_convs):
                c_in = fpn_channels if k == 0 else channels
                layers.append(conv_norm_act(c_in, channels, 3, 1, norm_layer, act_layer))
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        pyramid = self.fpn(features)
        out = self.scale_heads[0](pyramid[0])
        for head, x in zip(self.scale_heads[1:], pyramid[1:], strict=True):
            out = out + resize_like(head(x), out)
        return self.classifier(out)
