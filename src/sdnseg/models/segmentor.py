"""Encoder–decoder segmentor: backbone -> optional SDN neck -> head, plus mmseg's inference modes.

The forward pass follows the padded-forward rule of :mod:`sdnseg.models.padding` (pad to a
multiple of ``size_divisor``, resize the logits to the padded size, crop), so any input size gives
logits at the input size. The forward contract:

- ``forward(images)`` returns the logits, in training and in evaluation mode alike;
- ``forward_train(images)`` returns a :class:`SegmentorOutput`: the logits plus the named
  auxiliary outputs the losses need (the auxiliary FCN head's logits, ``aux["aux"]``, and the
  edge head's boundary logit, ``aux["edge"]``).

A head that makes its own auxiliary prediction on the way to its logits (OCRNet's soft object
regions, :class:`~sdnseg.models.heads.OCRHead`) sets ``returns_aux = True`` and returns
``(logits, aux_logits)``; ``forward_train`` gives the second as ``aux["aux"]``, so the losses weight
it as they weight an auxiliary head's, and such a segmentor takes no separate ``aux_head``.

A mask-classification head (MaskFormer, :class:`~sdnseg.models.heads.MaskFormerHead`) sets
``returns_masks = True``: it is called as ``head(features, with_masks)`` and returns its semantic
logits (the log of MaskFormer's semantic scores, so that softmax and argmax keep their meaning)
and a dict of per-decoder-layer predictions; ``forward_train`` passes them on in ``aux``
(``"class_logits"`` (L, N, Q, C + 1) as they are, ``"mask_logits"`` (L, N, Q, h, w) at the mask
resolution, cropped to the part of the padded input the image covers) for
:class:`~sdnseg.models.losses.MaskFormerLoss`.

:meth:`Segmentor.inference` adds mmseg's sliding window and the multi-scale + flip test-time
augmentation (softmax averaged over the views).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.hub import SegmentorHubMixin
from sdnseg.models.padding import crop_padding, pad_to_multiple, valid_size

MODES = ("whole", "slide")
OUTPUTS = ("probs", "logits")


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@dataclass
class SegmentorOutput:
    """What :meth:`Segmentor.forward_train` returns.

    Attributes:
        logits: (N, num_classes, H, W) at the input size, the decode head's.
        aux: named auxiliary outputs at the input size, e.g. ``"aux"``: the auxiliary FCN head's
            logits (mmseg's ``auxiliary_head``), weighted in :func:`~sdnseg.models.segmentation_loss`;
            ``"edge"``: the edge head's (N, 1, H, W) logit, read by the edge losses;
            ``"class_logits"`` / ``"mask_logits"``: a MaskFormer's per-decoder-layer predictions,
            the masks at their own resolution (see the module doc), read by
            :class:`~sdnseg.models.losses.MaskFormerLoss`.
    """

    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class Segmentor(nn.Module, SegmentorHubMixin):
    """Backbone, optional neck, decode head and optional auxiliary head.

    ``save_pretrained(dir)`` / ``Segmentor.from_pretrained(dir_or_repo_id)`` / ``push_to_hub``
    save and load zoo models Hub-style (:mod:`sdnseg.models.hub`).

    Args:
        backbone: returns a list of features and has ``reductions`` (a :class:`Backbone`).
        head: features -> logits; has ``num_classes``. With ``returns_aux = True``: features ->
            ``(logits, aux_logits)``; with ``returns_masks = True``: ``(features, with_masks)`` ->
            ``(logits, predictions)`` (see the module docstring).
        neck: features -> features (an SDN neck), or ``None``.
        aux_head: a second head for the auxiliary loss, run by ``forward_train`` only; not with
            a head that returns its own auxiliary logits.
        edge_head: a boundary head (:class:`~sdnseg.models.heads.EdgeHead`), run by
            ``forward_train`` only, for the edge losses (InverseForm).
        size_divisor: the input is padded to a multiple of it. Default: the largest backbone
            reduction, with or without an SDN neck, so that a +SDN twin sees exactly the input
            its baseline sees (Φ's stride-2 map of an odd size is resized bilinearly to U's).

    Attributes:
        num_classes: classes of the head's logits.
        size_divisor: as above.
        has_aux: whether ``forward_train`` gives ``aux["aux"]`` (an auxiliary head, or a head
            that returns its own auxiliary logits).
        config: the :class:`~sdnseg.models.ModelConfig` if built by ``create_model``, else ``None``.

    Shape:
        forward: (N, 3, H, W) -> logits (N, num_classes, H, W), in train and eval mode.
        forward_train: (N, 3, H, W) -> :class:`SegmentorOutput`, with ``aux["aux"]`` (same shape)
        when ``has_aux``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        *,
        neck: nn.Module | None = None,
        aux_head: nn.Module | None = None,
        edge_head: nn.Module | None = None,
        size_divisor: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.aux_head = aux_head
        self.edge_head = edge_head
        if not hasattr(head, "num_classes"):
            raise ValueError(f"head {type(head).__name__} has no attribute num_classes")
        self.num_classes: int = head.num_classes
        self.head_returns_aux = bool(getattr(head, "returns_aux", False))
        self.head_returns_masks = bool(getattr(head, "returns_masks", False))
        if self.head_returns_aux and aux_head is not None:
            raise ValueError(
                f"head {type(head).__name__} returns its own auxiliary logits (aux['aux']); "
                "pass no aux_head"
            )
        self.has_aux = self.head_returns_aux or aux_head is not None
        if size_divisor is None:
            size_divisor = max(backbone.reductions)
        self.size_divisor = size_divisor
        self.config = None  # the ModelConfig, set by sdnseg.models.create_model

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone (and neck) features of already padded images."""
        features = self.backbone(images)
        return self.neck(features) if self.neck is not None else features

    def _decode(self, images: torch.Tensor, with_aux: bool) -> SegmentorOutput:
        padded = pad_to_multiple(images, self.size_divisor)
        features = self.features(padded)
        padded_size, size = padded.shape[-2:], images.shape[-2:]
        masks: dict[str, torch.Tensor] = {}
        if self.head_returns_masks:
            (logits, masks), aux = self.head(features, with_aux), None
        else:
            logits, aux = self.head(features), None
        if self.head_returns_aux:
            logits, aux = logits
        elif with_aux and self.aux_head is not None:
            aux = self.aux_head(features)
        output = SegmentorOutput(crop_padding(logits, padded_size, size))
        if with_aux and aux is not None:
            output.aux["aux"] = crop_padding(aux, padded_size, size)
        for key, value in masks.items():  # mask logits: crop the padding at their resolution
            if key == "mask_logits":
                height, width = valid_size(value.shape[-2:], size, padded_size)
                value = value[..., :height, :width]
            output.aux[key] = value
        if with_aux and self.edge_head is not None:
            output.aux["edge"] = crop_padding(self.edge_head(features), padded_size, size)
        return output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._decode(images, with_aux=False).logits

    def forward_train(self, images: torch.Tensor) -> SegmentorOutput:
        """Logits and the auxiliary outputs (the auxiliary and edge heads run only here)."""
        return self._decode(images, with_aux=True)

    def slide_inference(
        self, images: torch.Tensor, crop_size: int | Sequence[int], stride: int | Sequence[int]
    ) -> torch.Tensor:
        """mmseg's ``slide_inference``: logits of overlapping crops, averaged where they overlap.

        Shape:
            (N, 3, H, W) -> (N, num_classes, H, W)
        """
        (crop_h, crop_w), (stride_h, stride_w) = _pair(crop_size), _pair(stride)
        if min(crop_h, crop_w, stride_h, stride_w) <= 0:
            raise ValueError(f"crop_size and stride must be positive, got {crop_size}, {stride}")
        n, _, height, width = images.shape
        h_grids = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
        w_grids = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
        logits = images.new_zeros((n, self.num_classes, height, width))
        count = images.new_zeros((1, 1, height, width))
        for i in range(h_grids):
            for j in range(w_grids):
                y2, x2 = min(i * stride_h + crop_h, height), min(j * stride_w + crop_w, width)
                y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
                logits[:, :, y1:y2, x1:x2] += self(images[:, :, y1:y2, x1:x2])
                count[:, :, y1:y2, x1:x2] += 1
        return logits / count

    @torch.no_grad()
    def inference(
        self,
        images: torch.Tensor,
        mode: str = "whole",
        crop_size: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        output: str = "probs",
    ) -> torch.Tensor:
        """Test-time prediction with optional multi-scale and flip augmentation (mmseg's TTA).

        Each view (every scale, and its horizontal flip when ``flip``) is resized bilinearly, run in
        ``mode``, un-flipped and resized back to the input size; the views' softmax probabilities
        (``output="probs"``) or raw logits (``output="logits"``) are averaged.
        Call ``eval()`` first.

        Args:
            images: normalised images.
            mode: ``"whole"`` (one pass) or ``"slide"`` (see :meth:`slide_inference`).
            crop_size, stride: of the sliding window; required for ``"slide"``.
            scales: resize factors, e.g. the paper's ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)``.
            flip: also run each scale flipped horizontally.
            output: ``"probs"`` or ``"logits"``.

        Shape:
            (N, 3, H, W) -> (N, num_classes, H, W)
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if mode == "slide" and (crop_size is None or stride is None):
            raise ValueError("mode='slide' needs crop_size and stride")
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be positive and non-empty, got {scales}")
        size = images.shape[-2:]
        total = None
        for scale in scales:
            scaled_size = [int(s * scale + 0.5) for s in size]
            scaled = _resize(images, scaled_size)
            for flipped in (False, True) if flip else (False,):
                view = scaled.flip(-1) if flipped else scaled
                if mode == "slide":
                    logits = self.slide_inference(view, crop_size, stride)
                else:
                    logits = self(view)
                logits = _resize(logits.flip(-1) if flipped else logits, size)
                result = logits.softmax(dim=1) if output == "probs" else logits
                total = result if total is None else total + result
        return total / (len(scales) * (2 if flip else 1))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, **inference_kwargs) -> torch.Tensor:
        """Label map: argmax over classes of :meth:`inference` (same keyword arguments).

        Shape:
            (N, 3, H, W) -> (N, H, W), int64
        """
        return self.inference(images, **inference_kwargs).argmax(dim=1)
