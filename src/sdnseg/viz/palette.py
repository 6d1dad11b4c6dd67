"""Colour tables for label maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["colorize"]


def colorize(labels: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Palette colours of a label map: uint8 (H, W, 3); labels without a colour are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return lut[np.asarray(labels, dtype=np.int64).clip(0, 255)]
