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

# Greyscale PIL modes wider than 8 bits: 16-bit PNG/TIFF open as I;16* or I (and F for floats).
_WIDE_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Single-channel PIL modes whose pixel values are class ids (P: palette indices are the ids).
_MASK_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B")


def read_image(path: Path) -> tv_tensors.Image:
    """Read an image file as a uint8 RGB ``tv_tensors.Image`` of shape (3, H, W).

    16-bit greyscale (PIL modes ``I;16*``, and ``I`` holding values up to 65535, as 16-bit PNGs
    open) is rescaled to 0..255 by its bit depth (``round(v * 255 / 65535)``); PIL's own
    conversion to RGB clips it, which turns most pixels white. 16-bit RGB(A) PNGs are read as
    8-bit by PIL (the high byte of each value). Floating-point and 32-bit integer images above
    65535 are refused.
    """
    try:
        with PILImage.open(path) as pil:
            array = _rgb_array(pil, path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


def _rgb_array(pil: PILImage.Image, path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an open image, 16-bit greyscale rescaled (see :func:`read_image`)."""
    if pil.mode not in _WIDE_GREY:
        return np.asarray(pil.convert("RGB"))
    values = np.asarray(pil)
    if pil.mode == "F" or values.min() < 0 or values.max() > 65535:
        raise ValueError(
            f"image {path} has PIL mode {pil.mode!r} with values {values.min()}..{values.max()}; "
            "expected 8-bit or 16-bit images"
        )
    grey = np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


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
