"""Class-weighted cross-entropy and SegNet's median-frequency class weights.

Median frequency balancing (Eigen & Fergus, ICCV 2015; SegNet, Badrinarayanan et al., TPAMI 2017,
its CamVid weights): the weight of class ``c`` is ``median(freq) / freq(c)``, where ``freq(c)`` is
the pixels of ``c`` over the pixels of the images in which ``c`` is present. The helpers take label
maps (any iterable of masks) or counts, so that models never read data; the engine computes them
from the training split when a config asks for ``class_weight: median_frequency``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models.losses._common import logits_at_target, mean_over

MEDIAN_FREQUENCY = "median_frequency"


def class_pixel_counts(
    masks: Iterable[torch.Tensor], num_classes: int, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: its pixels, and all pixels (ignored ones included, as Eigen & Fergus count
    "the total number of pixels in images where c is present") of the images it appears in; both
    float64 (C,).

    Raises:
        ValueError: a mask holds an id outside ``[0, num_classes)`` other than ``ignore_index``.
    """
    pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    for index, mask in enumerate(masks):
        labels = torch.as_tensor(mask).reshape(-1).long()
        size = labels.numel()
        labels = labels[labels != ignore_index]
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"mask {index} holds class id {int(labels.max())} outside [0, {num_classes})"
            )
        counts = torch.bincount(labels, minlength=num_classes).double()
        pixels += counts
        image_pixels += (counts > 0).double() * size
    return pixels, image_pixels


def median_frequency_weights(
    pixels: torch.Tensor | Sequence[float],
    image_pixels: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """``median(freq) / freq`` with ``freq = pixels / image_pixels`` (SegNet's recipe).

    Args:
        pixels: labelled pixels of each class.
        image_pixels: pixels of the images each class appears in; None uses the total of
            ``pixels`` for every class (plain frequencies, when only class counts are known).

    Returns:
        float32 (C,) weights; a class without pixels gets 0 (there is nothing to weight) and is left
        out of the median.
    """
    pixels = torch.as_tensor(pixels, dtype=torch.float64)
    if image_pixels is None:
        image_pixels = torch.full_like(pixels, float(pixels.sum()))
    image_pixels = torch.as_tensor(image_pixels, dtype=torch.float64)
    if pixels.shape != image_pixels.shape or pixels.dim() != 1:
        raise ValueError(
            f"pixels and image_pixels must be (C,) vectors, got {tuple(pixels.shape)} and "
            f"{tuple(image_pixels.shape)}"
        )
    present = pixels > 0
    if not present.any():
        raise ValueError("no class has any pixel: cannot compute median-frequency weights")
    freq = pixels[present] / image_pixels[present]
    weights = torch.zeros_like(pixels)
    weights[present] = freq.quantile(0.5) / freq  # the median, averaged for an even count
    return weights.float()


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy with optional class weights and an ignored label.

    The mean follows :func:`~sdnseg.models.cross_entropy` (mmseg's CrossEntropyLoss): the weighted
    sum over labelled pixels divided by all pixels, or by the labelled ones (``avg_non_ignore``);
    mmseg also divides by the pixel count, not by the sum of the weights as PyTorch's weighted mean
    does.

    Args:
        class_weight: (C,) weights, or ``"median_frequency"`` (filled from the training split by
            the engine: :meth:`set_class_weight`), or None.
        ignore_index: the label to ignore.
        avg_non_ignore: average over labelled pixels only.

    Shape:
        logits (N, C, H', W') (resized to the target), target (N, H, W) -> scalar
    """

    def __init__(
        self,
        class_weight: Sequence[float] | str | None = None,
        ignore_index: int = 255,
        avg_non_ignore: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(class_weight, str) and class_weight != MEDIAN_FREQUENCY:
            raise ValueError(
                f"class_weight must be a list of floats, {MEDIAN_FREQUENCY!r} or None, got "
                f"{class_weight!r}"
            )
        self.ignore_index, self.avg_non_ignore = ignore_index, avg_non_ignore
        self.needs_class_weight = class_weight == MEDIAN_FREQUENCY
        # Not persistent: the weights are configuration, and checkpoints keep the model's keys.
        self.register_buffer("class_weight", None, persistent=False)
        if class_weight is not None and not self.needs_class_weight:
            self.set_class_weight(class_weight)

    def set_class_weight(self, class_weight: Sequence[float] | torch.Tensor) -> None:
        weight = torch.as_tensor(class_weight, dtype=torch.float32)
        if weight.dim() != 1 or not torch.isfinite(weight).all() or (weight < 0).any():
            raise ValueError(f"class_weight must be a vector of finite weights >= 0, got {weight}")
        self.class_weight = weight
        self.needs_class_weight = False

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(logits, target, type(self).__name__)
        if self.needs_class_weight:
            raise ValueError(
                "CrossEntropyLoss(class_weight='median_frequency') has no weights yet: the engine "
                "computes them from the training split at fit, or call set_class_weight(weights)"
            )
        weight = self.class_weight
        if weight is not None and weight.numel() != logits.shape[1]:
            raise ValueError(
                f"class_weight has {weight.numel()} entries but the logits have "
                f"{logits.shape[1]} classes"
            )
        if weight is not None:
            weight = weight.to(logits.dtype)
        target = target.long()
        loss = F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        )
        return mean_over(loss, target != self.ignore_index, self.avg_non_ignore)
