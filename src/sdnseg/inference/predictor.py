"""Predictor: a trained segmentor plus what it needs to label a raw image.

:func:`sdnseg.load_model` returns one. ``predict`` takes an image as it comes (PIL image, uint8
array H×W×3, uint8 tensor 3×H×W or H×W×3), applies the evaluation pipeline the model was
validated with (:func:`sdnseg.data.eval_transforms`: keep-ratio resize to the test base size,
normalisation), runs the segmentor's inference mode (whole or slide, optional multi-scale + flip)
and returns an H×W int64 label map at the image's own size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors

from sdnseg.data.transforms import eval_transforms
from sdnseg.inference import postprocess as pp
from sdnseg.viz.palette import colorize

__all__ = ["Predictor", "probabilities", "to_chw_uint8"]


def to_chw_uint8(image: Any) -> torch.Tensor:
    """An image as a uint8 (3, H, W) tensor.

    Accepts a PIL image, or a numpy array or tensor of shape (H, W, 3), (3, H, W) or (H, W)
    (grey, repeated). Where the shape alone does not tell (3 on both ends), numpy arrays are read
    channels-last (the PIL / OpenCV convention) and tensors channels-first. Float inputs are taken
    to be on the 0..255 scale.
    """
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[-1] != 3 and image.shape[0] == 3:
            image = image.transpose(1, 2, 0)
        tensor = torch.from_numpy(np.array(image, copy=True))  # owned and writable
        tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] != 3 and tensor.shape[-1] == 3:
            tensor = tensor.permute(2, 0, 1)
    else:
        raise ValueError(f"expected a PIL image, numpy array or tensor, got {type(image).__name__}")
    if tensor.ndim == 2:
        tensor = tensor.expand(3, *tensor.shape)
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected an RGB image (3, H, W) or (H, W, 3), got {tuple(image.shape)}")
    if tensor.dtype != torch.uint8:
        tensor = tensor.float().round().clamp(0, 255).to(torch.uint8)
    return tensor.contiguous()


def probabilities(
    net: nn.Module,
    images: torch.Tensor,
    size: Sequence[int],
    mode: str = "whole",
    crop_size: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> torch.Tensor:
    """Softmax of a segmentor's test-time prediction, resized bilinearly to ``size``.

    This is how predictions meet full-resolution masks: the network sees the resized image, its
    (averaged) probabilities are brought back to the original size before the argmax.

    Shape:
        images (N, 3, h, w) normalised -> (N, C, *size)
    """
    probs = net.inference(
        images, mode=mode, crop_size=crop_size, stride=stride, scales=scales, flip=flip
    )
    if tuple(probs.shape[-2:]) != tuple(size):
        probs = F.interpolate(probs, size=tuple(size), mode="bilinear", align_corners=False)
    return probs


class Predictor(nn.Module):
    """A segmentor with its class table, normalisation and test settings.

    Args:
        net: a :class:`~sdnseg.models.Segmentor` (or anything with its ``inference`` contract).
        classes: class names, index = label.
        palette: one RGB colour per class.
        mean, std: normalisation on the 0..255 scale.
        base_size: (H, W) the image is resized to fit (keeping its aspect ratio) before inference,
            or None to run at the image's own size.
        mode, crop_size, stride: the segmentor's inference mode (``"whole"`` or ``"slide"``).
        ignore_index: the label of unlabelled pixels in this model's data.

    Shape:
        forward: normalised (N, 3, H, W) -> logits (N, C, H, W), the segmentor's eval forward.
    """

    def __init__(
        self,
        net: nn.Module,
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        mean: Sequence[float],
        std: Sequence[float],
        base_size: Sequence[int] | None = None,
        mode: str = "whole",
        crop_size: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if len(palette) != len(classes):
            raise ValueError(f"got {len(classes)} classes but {len(palette)} palette colours")
        self.net = net
        self.classes = tuple(classes)
        self.palette = [tuple(int(v) for v in colour) for colour in palette]
        self.mean, self.std = tuple(mean), tuple(std)
        self.base_size = tuple(base_size) if base_size is not None else None
        self.mode = mode
        self.crop_size = tuple(crop_size) if crop_size is not None else None
        self.stride = tuple(stride) if stride is not None else None
        self.ignore_index = ignore_index
        self._transform = eval_transforms(self.base_size, self.mean, self.std)
        self.eval()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def preprocess(self, image: Any) -> torch.Tensor:
        """The evaluation pipeline on one raw image: (1, 3, h, w) float32 on the model's device."""
        item = self._transform({"image": tv_tensors.Image(to_chw_uint8(image))})
        device = next(self.net.parameters()).device
        return item["image"].as_subclass(torch.Tensor)[None].to(device)

    @torch.no_grad()
    def predict_proba(
        self,
        image: Any,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        postprocess: str | None = None,
        segfix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Class probabilities (C, H, W) at the image's size.

        Args:
            image: see :func:`to_chw_uint8`.
            scales, flip: test-time augmentation (e.g. the paper's
                ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)`` with ``flip=True``).
            postprocess: ``None`` / ``"none"``, ``"crf"`` (DenseCRF, needs ``sdnseg[crf]``) or
                ``"segfix"`` (needs ``segfix``).
            segfix: for ``"segfix"``, a trained SegFix network
                (:func:`sdnseg.inference.load_segfix`).
        """
        rgb = to_chw_uint8(image)
        probs = probabilities(
            self.net,
            self.preprocess(rgb),
            rgb.shape[-2:],
            self.mode,
            self.crop_size,
            self.stride,
            scales,
            flip,
        )
        return pp.postprocess(postprocess, rgb[None], probs, segfix)[0]

    @torch.no_grad()
    def predict(
        self,
        image: Any,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        postprocess: str | None = None,
        segfix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Label map (H, W) int64 at the image's size, on the CPU (arguments as
        :meth:`predict_proba`)."""
        probs = self.predict_proba(image, scales, flip, postprocess, segfix)
        return probs.argmax(dim=0).cpu()

    def colorize(self, labels: torch.Tensor) -> np.ndarray:
        """Palette colours of a label map: uint8 (H, W, 3) (:func:`sdnseg.viz.palette.colorize`)."""
        return colorize(labels, self.palette)
