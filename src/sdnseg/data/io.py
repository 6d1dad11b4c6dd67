"""Reading image and label files: the one image reader of sdnseg.

Missing files raise :class:`FileNotFoundError`, unreadable or unsuitable ones :class:`ValueError`;
both name the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision import tv_tensors

__all__ = ["IMAGE_EXTENSIONS", "read_image", "read_mask"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Single-channel PIL modes whose pixel values are class ids (P: palette indices are the ids).
_MASK_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B")


def read_image(path: Path) -> tv_tensors.Image:
    """Read an image file as a uint8 RGB ``tv_tensors.Image`` of shape (3, H, W)."""
    try:
        with PILImage.open(path) as pil:
            array = np.asarray(pil.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


def read_mask(path: Path) -> np.ndarray:
    """Read a single-channel label file as an int64 array of shape (H, W), values as stored."""
    try:
        with PILImage.open(path) as pil:
            mode = pil.mode
            if mode not in _MASK_MODES:
                raise ValueError(
                    f"mask {path} has PIL mode {mode!r} ({len(pil.getbands())} channels); "
                    f"expected a single-channel PNG of class ids (mode L, P or I;16)"
                )
            array = np.asarray(pil)
    except FileNotFoundError:
        raise FileNotFoundError(f"mask file not found: {path}") from None
    except ValueError:
        raise
    except OSError as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err
    return array.astype(np.int64)
