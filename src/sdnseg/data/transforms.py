"""The mmseg reference augmentation written with ``torchvision.transforms.v2``.

Items are dicts holding a ``tv_tensors.Image`` and a ``tv_tensors.Mask`` (see
:mod:`sdnseg.data.base`), so every geometric transform moves image and mask together; masks
are always resized with nearest neighbour and never normalised. torchvision covers flip, dtype and
normalisation; the four classes here are what it lacks:

- :class:`RandomRatioResize`: mmcv ``RandomResize(scale, ratio_range, keep_ratio=True)``;
- :class:`KeepRatioResize`: mmcv ``Resize(scale, keep_ratio=True)``, optionally image only;
- :class:`RandomCropCatMax`: mmseg ``RandomCrop(crop_size, cat_max_ratio)``;
- :class:`PhotoMetricDistortion`: mmseg's (additive brightness, multiplicative contrast, HSV
  saturation); torchvision's ``ColorJitter`` blends towards grey / mean instead;
- :class:`PadToSize`: bottom/right padding to a fixed size (mmseg pads in its data preprocessor).

:func:`denormalize` undoes the normalisation, for figures and DenseCRF's appearance kernel.

Randomness comes from torch's global generator, so ``torch.manual_seed`` (and the DataLoader's
per-worker seeding) makes a pipeline reproducible.

Length: a little over ~400 lines: the mmseg pipeline's transforms and its inverse (``denormalize``) belong in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as nnf
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from sdnseg.data.info import IGNORE_INDEX

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KeepRatioResize",
    "PadToSize",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomRatioResize",
    "denormalize",
    "eval_transforms",
    "train_transforms",
]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def keep_ratio_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """mmcv ``rescale_size``: the largest size with the image's aspect ratio that fits ``scale``.

    Only the long and short edges of ``scale`` matter: the result's long edge is at most
    ``max(scale)`` and its short edge at most ``min(scale)``.
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Image):
            return int(inpt.shape[-2]), int(inpt.shape[-1])
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Mask):
            return int(inpt.shape[-2]), int(inpt.shape[-1])
    raise TypeError("no tv_tensors.Image or tv_tensors.Mask in the sample")


def _resize(inpt: Any, size: tuple[int, int], antialias: bool) -> Any:
    if isinstance(inpt, tv_tensors.Mask):
        # Masks ignore the interpolation argument: torchvision resizes them with NEAREST.
        return F.resize(inpt, list(size))
    return F.resize(
        inpt, list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=antialias
    )


class RandomRatioResize(v2.Transform):
    """Resize by a random ratio of a base scale, keeping the aspect ratio (mmcv ``RandomResize``).

    Draws ``r ~ U(ratio_range)``. With ``scale`` the target is ``scale * r`` and the image is
    rescaled to fit it with its aspect ratio (:func:`keep_ratio_size`: long edge within
    ``max(scale) * r``, short edge within ``min(scale) * r``); with ``scale=None`` the image is
    simply rescaled by ``r``. Images bilinear, masks nearest.

    Args:
        scale: base (H, W) (only its long and short edges matter), or None for the image's own.
        ratio_range: (low, high) of the uniform ratio.
        antialias: antialias image downscaling (mmseg/OpenCV does not).
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(
        self,
        scale: Sequence[int] | None = None,
        ratio_range: tuple[float, float] = (0.5, 2.0),
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if scale is not None and (len(scale) != 2 or min(scale) <= 0):
            raise ValueError(f"scale must be two positive ints (H, W) or None, got {scale!r}")
        if not 0 < ratio_range[0] <= ratio_range[1]:
            raise ValueError(f"ratio_range must satisfy 0 < low <= high, got {ratio_range!r}")
        self.scale = tuple(scale) if scale is not None else None
        self.ratio_range = tuple(ratio_range)
        self.antialias = antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _size(flat_inputs)
        low, high = self.ratio_range
        ratio = low + (high - low) * float(torch.rand(()))
        if self.scale is None:
            size = (max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5)))
        else:
            target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
            size = keep_ratio_size(height, width, target)
        return {"size": size}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"], self.antialias)


class KeepRatioResize(v2.Transform):
    """Resize to fit ``scale`` keeping the aspect ratio (mmcv ``Resize(keep_ratio=True)``).

    Args:
        scale: (H, W); only its long and short edges matter (see :func:`keep_ratio_size`).
        resize_mask: also resize masks (nearest); False leaves them at their original size, the
            evaluation contract where predictions are scored at full resolution.
        antialias: antialias image downscaling.
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, scale: Sequence[int], resize_mask: bool = True, antialias: bool = False):
        super().__init__()
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(f"scale must be two positive ints (H, W), got {scale!r}")
        self.scale = tuple(scale)
        self.resize_mask = resize_mask
        self.antialias = antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"size": keep_ratio_size(*_size(flat_inputs), self.scale)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and not self.resize_mask:
            return inpt
        return _resize(inpt, params["size"], self.antialias)


class RandomCropCatMax(v2.Transform):
    """Random crop that avoids crops dominated by one class (mmseg ``RandomCrop``).

    The crop is ``min(H, h) x min(W, w)`` (pad afterwards with :class:`PadToSize`). Up to
    ``max_tries`` random crops are checked; the first whose mask holds more than one non-ignored
    class, none of them covering ``cat_max_ratio`` or more of the non-ignored pixels, is kept. If
    all fail, one more random crop is used unchecked, as mmseg does. ``cat_max_ratio >= 1`` or a
    sample without a mask turns the check off.

    Args:
        size: crop (h, w).
        cat_max_ratio: largest allowed share of one class.
        ignore_index: mask value excluded from the counts.
        max_tries: crops to check.
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(
        self,
        size: Sequence[int],
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        max_tries: int = 10,
    ) -> None:
        super().__init__()
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"crop size must be two positive ints (h, w), got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_tries = max_tries

    def _random_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        top = int(torch.randint(0, max(height - self.size[0], 0) + 1, ()))
        left = int(torch.randint(0, max(width - self.size[1], 0) + 1, ()))
        return top, left, min(height, self.size[0]), min(width, self.size[1])

    def _accept(self, mask: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
        top, left, h, w = box
        crop = mask[..., top : top + h, left : left + w]
        labels = crop[crop != self.ignore_index]
        if labels.numel() == 0:
            return False
        counts = torch.unique(labels, return_counts=True)[1]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _size(flat_inputs)
        box = self._random_box(height, width)
        mask = next((x for x in flat_inputs if isinstance(x, tv_tensors.Mask)), None)
        if mask is not None and self.cat_max_ratio < 1.0:
            for _ in range(self.max_tries):
                if self._accept(mask, box):
                    break
                box = self._random_box(height, width)
        return {"box": box}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        top, left, h, w = params["box"]
        return F.crop(inpt, top, left, h, w)


class PhotoMetricDistortion(v2.Transform):
    """mmseg ``PhotoMetricDistortion`` on uint8 images; masks pass through.

    In order, each step with probability 0.5: brightness ``+ U(-delta, delta)``; contrast
    ``× U(contrast_range)`` (here or after hue, chosen at random); saturation ``× U(range)`` on
    HSV S (clipped to 1); hue shift by a random integer in ``[-hue_delta, hue_delta]`` OpenCV units
    (180 per turn; done with torchvision's ``adjust_hue``). Values are clipped to 0..255 after each
    step and truncated to uint8 at the end (mmseg truncates after each step).

    Args:
        brightness_delta: largest additive brightness change.
        contrast_range: range of the multiplicative contrast factor.
        saturation_range: range of the saturation factor.
        hue_delta: largest hue shift in OpenCV units.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        super().__init__()
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta

    @staticmethod
    def _coin() -> bool:
        return bool(torch.rand(()) < 0.5)

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        # None means "skip this step"; drawn in mmseg's order.
        brightness = (
            self._uniform(-self.brightness_delta, self.brightness_delta) if self._coin() else None
        )
        contrast_first = self._coin()
        contrast = self._uniform(*self.contrast_range) if self._coin() else None
        saturation = self._uniform(*self.saturation_range) if self._coin() else None
        hue = int(torch.randint(-self.hue_delta, self.hue_delta + 1, ())) if self._coin() else None
        return {
            "brightness": brightness,
            "contrast_first": contrast_first,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt.dtype != torch.uint8:
            raise ValueError(
                f"PhotoMetricDistortion expects a uint8 image (before normalisation), "
                f"got {inpt.dtype}"
            )
        img = inpt.as_subclass(torch.Tensor).float()
        if params["brightness"] is not None:
            img = (img + params["brightness"]).clamp_(0, 255)
        if params["contrast_first"] and params["contrast"] is not None:
            img = (img * params["contrast"]).clamp_(0, 255)
        if params["saturation"] is not None:
            img = _scale_saturation(img, params["saturation"])
        if params["hue"] is not None:
            img = F.adjust_hue(img / 255.0, params["hue"] / 180.0) * 255.0
        if not params["contrast_first"] and params["contrast"] is not None:
            img = (img * params["contrast"]).clamp_(0, 255)
        return tv_tensors.wrap(img.clamp_(0, 255).to(torch.uint8), like=inpt)


def _scale_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply HSV saturation by ``factor`` (clipped to 1) keeping hue and value.

    At fixed H and V every channel is ``V - S * V * f(H)``, so scaling S scales each channel's
    distance below the maximum: ``c' = V - a (V - c)`` with ``a = min(factor, 1 / S)``.
    """
    value = img.amax(dim=-3, keepdim=True)
    spread = value - img.amin(dim=-3, keepdim=True)  # = S * V
    limit = torch.where(spread > 0, value / spread.clamp(min=1e-6), torch.full_like(value, factor))
    scale = torch.clamp(limit, max=factor)
    return (value - scale * (value - img)).clamp_(0, 255)


class PadToSize(v2.Transform):
    """Pad bottom/right up to (h, w): images with ``fill``, masks with ``mask_fill``.

    Sides already at least as large are left alone (no cropping).

    Args:
        size: (h, w) to reach.
        fill: image padding value (0 after normalisation, as mmseg's preprocessor pads).
        mask_fill: mask padding value, the ignore index.
    """

    _transformed_types = (tv_tensors.Image, tv_tensors.Mask)

    def __init__(self, size: Sequence[int], fill: float = 0, mask_fill: int = IGNORE_INDEX):
        super().__init__()
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"size must be two positive ints (h, w), got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.fill, self.mask_fill = fill, mask_fill

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        pad_h = max(self.size[0] - int(inpt.shape[-2]), 0)
        pad_w = max(self.size[1] - int(inpt.shape[-1]), 0)
        if pad_h == 0 and pad_w == 0:
            return inpt
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.fill
        return F.pad(inpt, [0, 0, pad_w, pad_h], fill=fill)


def _normalise(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values, std positive; got {mean!r}, {std!r}")
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=False),
        v2.Normalize(list(mean), list(std)),
    ]


def train_transforms(
    base_size: Sequence[int] | None = None,
    crop_size: Sequence[int] = (512, 512),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    *,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> v2.Compose:
    """The mmseg training pipeline.

    RandomRatioResize(base_size, ratio_range) -> RandomCropCatMax(crop_size, cat_max_ratio) ->
    RandomHorizontalFlip(flip_prob) -> PhotoMetricDistortion (if ``photometric``) ->
    float32 and Normalize(mean, std) on the 0..255 scale -> PadToSize(crop_size, 0, ignore).

    Output item: ``image`` float32 Image (3, h, w), ``mask`` int64 Mask (h, w) with
    ``(h, w) = crop_size`` (padding 0 in the image, ``ignore_index`` in the mask), ``path``.

    Args:
        base_size: base (H, W) for the ratio resize (mmseg's ``scale``; e.g. (1024, 2048) for
            Cityscapes, (512, 2048) for ADE20K); None scales each image's own size.
        crop_size: (h, w) of the output.
        mean, std: per-channel normalisation on 0..255 (default ImageNet).
        ratio_range: range of the random resize ratio.
        cat_max_ratio: see :class:`RandomCropCatMax`.
        flip_prob: horizontal flip probability.
        photometric: add :class:`PhotoMetricDistortion`.
        ignore_index: mask padding and the id the crop check skips.
    """
    steps: list[v2.Transform] = [
        RandomRatioResize(base_size, ratio_range),
        RandomCropCatMax(crop_size, cat_max_ratio, ignore_index),
        v2.RandomHorizontalFlip(flip_prob),
    ]
    if photometric:
        steps.append(PhotoMetricDistortion())
    steps += _normalise(mean, std)
    steps.append(PadToSize(crop_size, fill=0, mask_fill=ignore_index))
    return v2.Compose(steps)


def eval_transforms(
    base_size: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The mmseg test pipeline: resize the image only, normalise, keep the mask at full size.

    Output item: ``image`` float32 Image (3, h, w), resized to fit ``base_size`` with its aspect
    ratio (:class:`KeepRatioResize`) or at its own size when ``base_size`` is None; ``mask`` int64
    Mask (H, W) **at the original resolution, untouched** (predictions are resized back to it
    before scoring); ``path``.

    Args:
        base_size: (H, W) to fit, or None to keep every image at full size.
        mean, std: per-channel normalisation on 0..255.
    """
    steps: list[v2.Transform] = []
    if base_size is not None:
        steps.append(KeepRatioResize(base_size, resize_mask=False))
    steps += _normalise(mean, std)
    return v2.Compose(steps)


def denormalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    size: Sequence[int] | None = None,
) -> torch.Tensor:
    """uint8 RGB from normalised images: ``images * std + mean``, rounded and clamped to 0..255.

    Args:
        images: (3, H, W) or (B, 3, H, W), normalised with ``mean`` and ``std`` on 0..255.
        mean, std: the per-channel normalisation.
        size: (h, w) to resize to (bilinear, on the 0..255 values, before rounding); None keeps
            the size.

    Returns:
        uint8 tensor of the input's layout, on its device.
    """
    shape = (3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(shape)
    rgb = images.float() * std_t + mean_t
    if size is not None and tuple(rgb.shape[-2:]) != tuple(size):
        batched = rgb if rgb.ndim == 4 else rgb[None]
        resized = nnf.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False)
        rgb = resized if rgb.ndim == 4 else resized[0]
    return rgb.round().clamp(0, 255).to(torch.uint8)
