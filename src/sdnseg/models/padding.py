"""The padded-forward rule of every segmentor: pad to a multiple of the output stride, crop back.

A backbone of output stride ``s`` maps an input of size ``H`` to ``ceil(H / s)`` features only
when ``H`` is a multiple of ``s``; otherwise stages disagree by a pixel and the logits drift off
the image grid. So the input is zero-padded bottom/right (mmseg's ``pad_val=0`` after
normalisation) to a multiple of ``size_divisor``, the logits are resized bilinearly
(``align_corners=False``) to the padded size, and the padding is cropped away.

Written with shape arithmetic only (no branch on the sizes), so ``torch.onnx.export`` traces a
graph whose height and width stay dynamic: where no padding is needed, the pad adds zero pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["crop_padding", "pad_to_multiple", "valid_size"]


def pad_to_multiple(images: torch.Tensor, divisor: int) -> torch.Tensor:
    """Zero-pad the bottom and right of ``images`` to a multiple of ``divisor``.

    Shape:
        (N, C, H, W) -> (N, C, ceil(H / d) · d, ceil(W / d) · d)
    """
    height, width = images.shape[-2], images.shape[-1]
    pad_h = (divisor - height % divisor) % divisor
    pad_w = (divisor - width % divisor) % divisor
    return F.pad(images, (0, pad_w, 0, pad_h))


def crop_padding(
    logits: torch.Tensor, padded_size: Sequence[int], size: Sequence[int]
) -> torch.Tensor:
    """Logits of the padded input, resized bilinearly to ``padded_size``, cropped to ``size``.

    Shape:
        (N, C, h, w) -> (N, C, *size)
    """
    height, width = size[0], size[1]
    # Whether the head's logits are already at the padded size depends on the model's
    # reductions only, not on the input size, so a tracer may freeze this branch.
    if tuple(logits.shape[-2:]) != tuple(padded_size):
        logits = F.interpolate(
            logits, size=tuple(padded_size), mode="bilinear", align_corners=False
        )
    return logits[..., :height, :width]


def valid_size(
    map_size: Sequence[int], image_size: Sequence[int], padded_size: Sequence[int]
) -> tuple[int, int]:
    """The top-left (h, w) of a feature map that covers the image, not the padding.

    Padding is added bottom/right, so the image covers the same top-left fraction of every map.
    """
    return tuple(  # type: ignore[return-value]
        min(m, math.ceil(m * i / p))
        for m, i, p in zip(map_size, image_size, padded_size, strict=True)
    )
