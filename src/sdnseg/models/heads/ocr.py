"""OCRNet's decode head: Yuan, Chen and Wang, *Object-Contextual Representations for Semantic
Segmentation* (ECCV 2020), laid out as mmsegmentation's ``FCNHead`` + ``OCRHead`` cascade of its
``ocrnet_hr48`` configs.

1. The features (HRNet's four branches) are resized bilinearly to the finest one and concatenated
   (mmseg's ``input_transform="resize_concat"``), 720 channels at stride 4 for HRNet-W48.
2. Soft object regions ``M``: an FCN head on that map (one 1×1 conv-BN-ReLU as wide as its input,
   then a 1×1 classifier), ``K = num_classes`` logit maps. They are also the head's auxiliary
   prediction, supervised as ``aux["aux"]`` (loss weight 0.4 in mmseg's configs).
3. Pixel representations ``x_i``: a 3×3 conv-BN-ReLU to ``channels`` (512).
4. Object region representations (OCR Sec. 3.3): ``f_k = Σ_i softmax_i(s · m_ki) · x_i``, each
   region's logits normalised by a softmax over the pixels (:func:`spatial_gather`).
5. Object contextual representations: the pixel-region relation
   ``w_ik = softmax_k(φ(x_i)ᵀ ψ(f_k) / √c)`` and ``y_i = ρ(Σ_k w_ik δ(f_k))``, with φ and ψ two
   1×1 conv-BN-ReLU, δ and ρ one each, ``c = ocr_channels`` (256) wide and ρ back to ``channels``
   (:class:`ObjectContext`).
6. Augmented representations ``z_i = g([y_i, x_i])`` (a 1×1 conv-BN-ReLU from ``2·channels``),
   then the classifier. mmseg's configs use no dropout in either head (``dropout_ratio=-1``).

The gradient of the main loss reaches the soft-region head through the gather, as in mmseg's
cascade (nothing is detached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sdnseg.models.heads.fcn import Classifier, FCNHead
from sdnseg.nn.sdn import conv_norm_act, resize_concat


def spatial_gather(
    pixels: torch.Tensor, region_logits: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """Object region representations ``f_k = Σ_i softmax_i(scale · m_ki) · x_i``.

    Shape:
        pixels (N, C, H, W), region_logits (N, K, H, W) -> (N, C, K)
    """
    if pixels.shape[0] != region_logits.shape[0] or pixels.shape[2:] != region_logits.shape[2:]:
        raise ValueError(
            f"spatial_gather: pixels {tuple(pixels.shape)} and region_logits "
            f"{tuple(region_logits.shape)} differ in batch or spatial size"
        )
    weights = (scale * region_logits.flatten(2)).softmax(dim=2)  # (N, K, HW)
    return torch.bmm(pixels.flatten(2), weights.transpose(1, 2))


class ObjectContext(nn.Module):
    """Object contextual representation and its fusion with the pixels (steps 5–6 above).

    Args:
        channels: width of the pixel and region representations (and of the output).
        ocr_channels: width of the key/query/value space.
        norm_layer, act_layer: of every 1×1 conv.

    Shape:
        pixels (N, channels, H, W), regions (N, channels, K) -> (N, channels, H, W)
    """

    def __init__(
        self,
        channels: int,
        ocr_channels: int,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()

        def project(c_in: int, c_out: int) -> nn.Sequential:
            return conv_norm_act(c_in, c_out, 1, 1, norm_layer, act_layer)

        self.query = nn.Sequential(
            project(channels, ocr_channels), project(ocr_channels, ocr_channels)
        )
        self.key = nn.Sequential(
            project(channels, ocr_channels), project(ocr_channels, ocr_channels)
        )
        self.value = project(channels, ocr_channels)
        self.out = project(ocr_channels, channels)
        self.fuse = project(2 * channels, channels)
        self.temperature = ocr_channels**-0.5

    def forward(self, pixels: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        n, _, h, w = pixels.shape
        regions = regions.unsqueeze(-1)  # (N, C, K, 1): the 1×1 convs act per region
        query = self.query(pixels).flatten(2)  # (N, c, HW)
        key = self.key(regions).flatten(2)  # (N, c, K)
        value = self.value(regions).flatten(2)  # (N, c, K)
        relation = (torch.bmm(query.transpose(1, 2), key) * self.temperature).softmax(dim=2)
        context = torch.bmm(value, relation.transpose(1, 2)).reshape(n, -1, h, w)
        return self.fuse(torch.cat([self.out(context), pixels], dim=1))


class OCRHead(nn.Module):
    """OCR decode head with its soft-region FCN head; returns the logits and the region logits.

    ``returns_aux`` tells :class:`~sdnseg.models.Segmentor` that ``forward`` gives
    ``(logits, aux_logits)``: the soft object regions are computed in every forward (OCR needs
    them), and ``forward_train`` returns them as ``aux["aux"]``.

    Args:
        in_channels: channels of the features, all of which are concatenated; a list whose sum is
            the concatenation's width also fits a neck that concatenated them already
            (:class:`~sdnseg.nn.ConcatSDN`).
        num_classes: output classes, also the number of soft object regions.
        channels: width of the pixel, region and augmented representations (512 in mmseg).
        ocr_channels: width of the key/query/value space (256 in mmseg).
        region_channels: width of the soft-region head's conv; None: the concatenation's width
            (mmseg's ``channels=sum(in_channels)``).
        scale: of the region logits in the spatial softmax (mmseg's ``scale``, 1).
        dropout: of both classifiers (0: none, as mmseg's OCRNet configs).
        norm_layer, act_layer: of every conv.

    Shape:
        a list of features, the first (N, C_0, h, w) -> logits (N, num_classes, h, w) and region
        logits (N, num_classes, h, w)
    """

    returns_aux = True

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        ocr_channels: int = 256,
        region_channels: int | None = None,
        scale: float = 1.0,
        dropout: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.num_classes = num_classes
        self.in_channels = sum(in_channels)
        self.scale = scale
        self.soft_regions = FCNHead(
            self.in_channels,
            num_classes,
            channels=self.in_channels if region_channels is None else region_channels,
            num_convs=1,
            concat_input=False,
            dropout=dropout,
            in_index=0,
            kernel_size=1,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        self.pixels = conv_norm_act(self.in_channels, channels, 3, 1, norm_layer, act_layer)
        self.object_context = ObjectContext(channels, ocr_channels, norm_layer, act_layer)
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = resize_concat(features)
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"OCRHead expects features of {self.in_channels} channels in all, got "
                f"{[f.shape[1] for f in features]}"
            )
        region_logits = self.soft_regions([x])
        pixels = self.pixels(x)
        regions = spatial_gather(pixels, region_logits, self.scale)
        return self.classifier(self.object_context(pixels, regions)), region_logits
