"""Post-processing of softmax probabilities: DenseCRF (Krähenbühl & Koltun 2011), via
``pydensecrf2``, and SegFix (Yuan et al., ECCV 2020), via a trained SegFix network.

DenseCRF's parameters are the usual DeepLab ones: a Gaussian (smoothness) kernel with ``sxy=3``,
``compat=3`` and a bilateral (appearance) kernel with ``sxy=80``, ``srgb=13``, ``compat=10``,
5 mean-field iterations. ``pydensecrf2`` is an optional dependency (``pip install 'sdnseg[crf]'``)
imported on first use, so the rest of sdnseg works without it.

SegFix moves each boundary pixel's probabilities to it from a pixel inside its segment
(:mod:`sdnseg.inference.segfix`), so the arg-max is the refined label map; it is passed in as a
:class:`~sdnseg.inference.segfix.SegFixRefiner` (:func:`~sdnseg.inference.segfix.load_segfix`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["POSTPROCESSORS", "dense_crf", "postprocess", "require_crf"]

POSTPROCESSORS = ("none", "crf", "segfix")


def require_crf():
    """``pydensecrf.densecrf``, or ``ModuleNotFoundError`` saying how to install it."""
    try:
        return importlib.import_module("pydensecrf.densecrf")
    except ImportError:
        raise ModuleNotFoundError(
            "--postprocess crf needs the optional package pydensecrf2; install it with "
            "pip install 'sdnseg[crf]'"
        ) from None


def dense_crf(
    image: np.ndarray | torch.Tensor,
    probs: np.ndarray | torch.Tensor,
    iterations: int = 5,
    gaussian_sxy: float = 3,
    gaussian_compat: float = 3,
    bilateral_sxy: float = 80,
    bilateral_srgb: float = 13,
    bilateral_compat: float = 10,
) -> torch.Tensor:
    """Refine one image's class probabilities with a fully connected CRF.

    Args:
        image: the RGB image, uint8, (H, W, 3) or (3, H, W).
        probs: softmax probabilities (C, H, W) at the image's size.
        iterations: mean-field iterations.
        gaussian_sxy, gaussian_compat: smoothness kernel.
        bilateral_sxy, bilateral_srgb, bilateral_compat: appearance kernel.

    Returns:
        Refined probabilities, float32 (C, H, W), on the device of ``probs`` if it is a tensor.
    """
    densecrf = require_crf()
    device = probs.device if isinstance(probs, torch.Tensor) else torch.device("cpu")
    prob = probs.detach().float().cpu().numpy() if isinstance(probs, torch.Tensor) else probs
    rgb = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if rgb.ndim == 3 and rgb.shape[0] == 3 and rgb.shape[-1] != 3:
        rgb = rgb.transpose(1, 2, 0)
    num_classes, height, width = prob.shape
    if rgb.shape != (height, width, 3):
        raise ValueError(
            f"image {rgb.shape} and probabilities {prob.shape} must share their size (H, W)"
        )
    crf = densecrf.DenseCRF2D(width, height, num_classes)
    # Unary = -log p; clipping keeps log finite where the softmax underflowed to 0.
    unary = -np.log(np.clip(prob, 1e-8, 1.0)).reshape(num_classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=bilateral_sxy,
        srgb=bilateral_srgb,
        rgbim=np.ascontiguousarray(rgb, dtype=np.uint8),
        compat=bilateral_compat,
    )
    refined = np.asarray(crf.inference(iterations), dtype=np.float32)
    return torch.from_numpy(refined.reshape(num_classes, height, width)).to(device)


def postprocess(
    name: str | None,
    images: torch.Tensor,
    probs: torch.Tensor,
    segfix: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Apply the named post-processing to a batch: ``"none"`` (or None), ``"crf"`` or
    ``"segfix"`` (which needs ``segfix``, a :class:`~sdnseg.inference.segfix.SegFixRefiner`).

    Shape:
        images uint8 (N, 3, H, W), probs (N, C, H, W) -> (N, C, H, W)
    """
    if name in (None, "none"):
        return probs
    if name == "segfix":
        if segfix is None:
            raise ValueError(
                "postprocess 'segfix' needs a SegFix network: "
                "segfix=sdnseg.inference.load_segfix(path) (--segfix_checkpoint PATH)"
            )
        return segfix(images, probs)
    if name != "crf":
        raise ValueError(f"postprocess must be one of {POSTPROCESSORS}, got {name!r}")
    return torch.stack([dense_crf(image, prob) for image, prob in zip(images, probs, strict=True)])
