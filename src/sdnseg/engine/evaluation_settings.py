"""How :class:`~sdnseg.engine.SegmentationModule` predicts at validate, test and predict time.

- inference ``whole`` or ``slide`` (mmseg's sliding window, ``eval_crop``/``eval_stride``), the
  probabilities brought back to the mask's size (:func:`sdnseg.inference.probabilities`);
- test-time variants: the single-scale prediction always, plus multi-scale and/or flip
  (``test_scales``, ``test_flip``; the paper's ``[0.5, ..., 2.0]`` and flip) as ``*_ms``;
- a post-processing of the probabilities: DenseCRF or SegFix (Yuan et al., ECCV 2020; a SegFix
  network's checkpoint, loaded on first use), as ``*_crf`` / ``*_segfix``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from sdnseg.inference.postprocess import POSTPROCESSORS, postprocess
from sdnseg.inference.predictor import probabilities
from sdnseg.inference.segfix import SegFixRefiner, load_segfix

__all__ = ["EVAL_MODES", "EvaluationSettings"]

EVAL_MODES = ("whole", "slide")


class EvaluationSettings:
    """Inference mode, test-time variants and post-processing, checked once.

    Args:
        eval_mode: ``"whole"`` (default) or ``"slide"``.
        eval_crop, eval_stride: the sliding window (h, w), needed by ``"slide"``.
        test_scales, test_flip: the multi-scale + flip variant (None / False: none).
        postprocess: ``"none"``, ``"crf"`` or ``"segfix"``.
        segfix_checkpoint: the SegFix network of ``postprocess="segfix"``.
        segfix_distance: SegFix's offset length in pixels at its network's resolution.

    Raises:
        ValueError: an unknown mode or post-processing, ``"slide"`` without a window, or
            ``"segfix"`` without a checkpoint.
    """

    def __init__(
        self,
        eval_mode: str | None = None,
        eval_crop: tuple[int, int] | None = None,
        eval_stride: tuple[int, int] | None = None,
        test_scales: Sequence[float] | None = None,
        test_flip: bool = False,
        postprocess: str = "none",
        segfix_checkpoint: str | os.PathLike | None = None,
        segfix_distance: float = 2.0,
    ) -> None:
        if eval_mode is not None and eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
        if eval_mode == "slide" and (eval_crop is None or eval_stride is None):
            raise ValueError("eval_mode='slide' needs eval_crop and eval_stride")
        if postprocess not in POSTPROCESSORS:
            raise ValueError(f"postprocess must be one of {POSTPROCESSORS}, got {postprocess!r}")
        if postprocess == "segfix" and not segfix_checkpoint:
            raise ValueError(
                "postprocess 'segfix' needs a SegFix network: --segfix_checkpoint PATH, a "
                "checkpoint of sdnseg fit --model.arch segfix_r18 (or segfix_efflite2)"
            )
        self.eval_mode = eval_mode or "whole"
        self.eval_crop, self.eval_stride = eval_crop, eval_stride
        self.test_scales = tuple(test_scales) if test_scales else (1.0,)
        self.test_flip = test_flip
        self.postprocess = postprocess
        self.segfix_checkpoint = segfix_checkpoint
        self.segfix_distance = segfix_distance
        self._refiner: SegFixRefiner | None = None

    def probs(
        self,
        net: nn.Module,
        images: torch.Tensor,
        size: Sequence[int],
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
    ) -> torch.Tensor:
        """float32 probabilities (N, C, *size) of ``net`` on ``images`` in the set mode."""
        mode, crop, stride = self.eval_mode, self.eval_crop, self.eval_stride
        return probabilities(net, images, size, mode, crop, stride, scales, flip).float()

    def variants(self) -> dict[str, tuple[tuple[float, ...], bool]]:
        """Test-time variants: metric-name suffix -> (scales, flip)."""
        variants = {"": ((1.0,), False)}
        if self.test_scales != (1.0,) or self.test_flip:
            variants["_ms"] = (self.test_scales, self.test_flip)
        return variants

    def refiner(self, device: torch.device | str) -> SegFixRefiner | None:
        """The SegFix network of ``postprocess="segfix"`` (loaded on first use), else None."""
        if self.postprocess == "segfix" and self._refiner is None:
            self._refiner = load_segfix(
                self.segfix_checkpoint, device, distance=self.segfix_distance
            )
        return self._refiner

    def refine(self, rgb: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The post-processed probabilities; ``rgb`` uint8 (N, 3, H, W) at the probs' size."""
        return postprocess(self.postprocess, rgb, probs, self.refiner(probs.device))
