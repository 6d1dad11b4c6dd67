"""FCN head (Long et al., CVPR 2015) as in mmsegmentation's ``FCNHead``, and the shared classifier.

mmseg's FCN-D8 head: ``num_convs`` 3×3 conv-BN-ReLU on the last feature, then ``conv_cat`` on
``[input, convs(input)]`` (``concat_input``), then the classifier ``Dropout2d`` + 1×1 conv. The same
class with ``in_index=-2, channels=256, num_convs=1, concat_input=False`` is the auxiliary head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sdnseg.nn.sdn import conv_norm_act


class Classifier(nn.Sequential):
    """mmseg's ``cls_seg``: ``Dropout2d(dropout)`` (skipped at 0) then a 1×1 conv with bias.

    The conv is initialised N(0, 0.01), bias 0, as mmseg's ``conv_seg``.

    Shape:
        (N, channels, H, W) -> (N, num_classes, H, W)
    """

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        conv = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), conv)


class FCNHead(nn.Module):
    """Fully convolutional head on one backbone feature.

    Args:
        in_channels: channels of ``features[in_index]``.
        num_classes: output classes.
        channels: width of the convs.
        num_convs: 3×3 conv-norm-act layers (0 requires ``in_channels == channels``).
        concat_input: fuse ``[input, convs(input)]`` by one more conv (``conv_cat``).
        dropout: of the classifier (``Dropout2d``).
        in_index: which feature of the list to read.
        kernel_size: of the convs.
        norm_layer, act_layer: callables, e.g. ``nn.BatchNorm2d`` / ``nn.ReLU``.

    Shape:
        a list of features; ``features[in_index]`` (N, in_channels, h, w) -> (N, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 512,
        num_convs: int = 2,
        concat_input: bool = True,
        dropout: float = 0.1,
        in_index: int = -1,
        kernel_size: int = 3,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs}")
        if num_convs == 0 and in_channels != channels:
            raise ValueError(
                f"num_convs=0 needs in_channels == channels, got {in_channels} and {channels}"
            )
        self.num_classes = num_classes
        self.in_index = in_index
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(
            *(
                conv_norm_act(c_in, channels, kernel_size, 1, norm_layer, act_layer)
                for c_in in widths[:-1]
            )
        )
        self.conv_cat = (
            conv_norm_act(in_channels + channels, channels, kernel_size, 1, norm_layer, act_layer)
            if concat_input
            else None
        )
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.classifier(out)
