"""SyntheticShapes: generated scenes with subtle class boundaries and interiors full of false edges.

Each class has a fixed appearance (it depends on the class id only, so every split and seed share
it): a mean colour (evenly spaced hues, alternating saturation and brightness) and a binary texture
(stripes, checkers or rings) with its own period and orientation that scales the brightness by
``1 ± 0.45``. A scene is a background region plus a few discs/ellipses, star-shaped polygons and
straight bands, painted in order, each of a random class; every region gets its own texture phase
and a small colour jitter, the whole image an illumination gradient and Gaussian noise.

So the strongest image edges lie *inside* regions (texture stripes, and seams where two regions of
one class meet), while class boundaries show only as a change of mean colour and texture: what
separates a boundary-aware model from an edge detector. No files; an item depends only on
``(seed, split, index)`` and costs about a millisecond at 128x128.
"""

from __future__ import annotations

import colorsys
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from sdnseg.data.info import IGNORE_INDEX, DatasetInfo, Item, Transform

__all__ = ["SyntheticShapes"]

_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
_TEXTURE_AMPLITUDE = 0.45
_NOISE_STD = 6.0
_COLOUR_JITTER = 10.0
_MAX_CLASSES = 64


def _class_appearance(num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class: RGB colour (K, 3) in 0..255, texture kind, period in pixels, angle in radians."""
    colours = []
    for c in range(num_classes):
        saturation, value = (0.8, 0.72) if c % 2 == 0 else (0.55, 0.5)
        colours.append([255.0 * v for v in colorsys.hsv_to_rgb(c / num_classes, saturation, value)])
    ids = np.arange(num_classes)
    kinds = ids % 3  # 0 stripes, 1 checkers, 2 rings
    periods = 4.0 + 2.0 * ((ids * 3) % 5)  # 4..12 px
    angles = np.deg2rad((ids * 47) % 180).astype(np.float32)
    return np.asarray(colours, np.float32), kinds, periods.astype(np.float32), angles


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an int or pair ``size``; raises if a side is under 16 pixels."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if min(height, width) < 16:
        raise ValueError(f"size must be at least 16 pixels per side, got {size!r}")
    return int(height), int(width)


def _stream(split: str) -> int:
    return _SPLIT_STREAMS.get(split, zlib.crc32(split.encode("utf-8")))


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Even-odd rule for the polygon with vertices (vx, vy), evaluated at every (xs, ys)."""
    inside = np.zeros(xs.shape, dtype=bool)
    for i in range(len(vx)):
        x1, y1, x2, y2 = vx[i - 1], vy[i - 1], vx[i], vy[i]
        if y1 == y2:
            continue
        crosses = (y1 > ys) != (y2 > ys)
        inside ^= crosses & (xs < (x2 - x1) * (ys - y1) / (y2 - y1) + x1)
    return inside


class SyntheticShapes(Dataset[Item]):
    """Procedural segmentation scenes (see the module docstring); the README demo's dataset.

    Items follow the dataset contract of :mod:`sdnseg.data.base`: ``image`` (uint8 Image,
    3 x H x W), ``mask`` (int64 Mask, H x W, no ignored pixels) and ``path``
    (``"synthetic/{split}/{index:06d}"``).

    Args:
        num_images: number of items.
        size: image size, an int or (H, W).
        num_classes: 2..64 classes (hues get closer as the count grows).
        seed: non-negative seed; with ``split`` and the index it fixes each item.
        split: any name; ``train``, ``val`` and ``test`` (and every other name) draw disjoint
            random streams, so splits differ while sharing class appearances.
        transforms: callable applied to each item dict.
    """

    ignore_index: int = IGNORE_INDEX
    needs_root: ClassVar[bool] = False
    options: ClassVar[tuple[str, ...]] = ("num_images", "size", "num_classes", "seed")

    def __init__(
        self,
        num_images: int = 256,
        size: int | tuple[int, int] = 128,
        num_classes: int = 6,
        seed: int = 0,
        split: str = "train",
        transforms: Transform | None = None,
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        height, width = self.size = _size(size)
        described = self.info(size=size, num_classes=num_classes)  # checks num_classes
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.num_images, self.seed = num_images, seed
        self.split, self.transforms = split, transforms
        self.classes, self.palette = described.classes, list(described.palette)
        self._colours, self._kinds, self._periods, self._angles = _class_appearance(num_classes)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
        self._xs, self._ys = xs, ys

    @classmethod
    def info(
        cls,
        root: str | Path | None = None,
        *,
        size: int | tuple[int, int] = 128,
        num_classes: int = 6,
        **options: Any,
    ) -> DatasetInfo:
        """Classes and palette of ``num_classes``, trained on whole ``size`` images by default
        (``root`` and the other options do not change the description)."""
        crop_size = _size(size)
        if not 2 <= num_classes <= _MAX_CLASSES:
            raise ValueError(f"num_classes must be in 2..{_MAX_CLASSES}, got {num_classes}")
        colours = _class_appearance(num_classes)[0]
        return DatasetInfo(
            classes=tuple(f"class{c}" for c in range(num_classes)),
            palette=tuple(tuple(int(round(v)) for v in colour) for colour in colours),
            crop_size=crop_size,
            uniform_size=True,
        )

    @classmethod
    def build(
        cls, root: str | Path | None = None, split: str = "train", **options: Any
    ) -> SyntheticShapes:
        """The uniform constructor of :class:`~sdnseg.data.info.DatasetClass` (``transforms``
        among the options); there are no files, so ``root`` is unused."""
        return cls(split=split, **options)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> Item:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        image, mask = self.generate(index)
        item = {
            "image": tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
            "mask": tv_tensors.Mask(torch.from_numpy(mask)),
            "path": f"synthetic/{self.split}/{index:06d}",
        }
        return self.transforms(item) if self.transforms is not None else item

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw scene: uint8 image (H, W, 3) and int64 class map (H, W)."""
        rng = np.random.default_rng([self.seed, _stream(self.split), index])
        height, width = self.size
        xs, ys = self._xs, self._ys
        scale = float(min(height, width))

        region = np.zeros((height, width), dtype=np.int64)
        num_shapes = int(rng.integers(3, 8))
        region_classes = rng.integers(0, self.num_classes, size=num_shapes + 1)
        for shape in range(1, num_shapes + 1):
            region[self._shape(rng, scale)] = shape
        mask = region_classes[region]

        image = np.empty((height, width, 3), dtype=np.float32)
        for r in np.unique(region):
            where = region == r
            c = int(region_classes[r])
            factor = 1.0 + _TEXTURE_AMPLITUDE * self._texture(rng, c, xs[where], ys[where])
            colour = self._colours[c] + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)
            image[where] = factor[:, None] * colour.astype(np.float32)

        gx, gy = rng.uniform(-0.15, 0.15, 2) / scale
        image *= (1.0 + gx * (xs - width / 2) + gy * (ys - height / 2))[..., None]
        image += rng.normal(0.0, _NOISE_STD, image.shape).astype(np.float32)
        return np.clip(image, 0, 255).round().astype(np.uint8), mask

    def _shape(self, rng: np.random.Generator, scale: float) -> np.ndarray:
        """Boolean map of one random disc/ellipse, star-shaped polygon or band."""
        height, width = self.size
        xs, ys = self._xs, self._ys
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        kind = int(rng.integers(0, 3))
        if kind == 0:
            rx, ry = rng.uniform(0.1, 0.35, 2) * scale
            theta = rng.uniform(0, np.pi)
            u = (xs - cx) * np.cos(theta) + (ys - cy) * np.sin(theta)
            v = -(xs - cx) * np.sin(theta) + (ys - cy) * np.cos(theta)
            return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
        if kind == 1:
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.1, 0.4, n) * scale
            return _inside_polygon(xs, ys, cx + radii * np.cos(angles), cy + radii * np.sin(angles))
        theta = rng.uniform(0, np.pi)
        half_width = rng.uniform(0.04, 0.12) * scale
        return np.abs((xs - cx) * np.cos(theta) + (ys - cy) * np.sin(theta)) <= half_width

    def _texture(
        self, rng: np.random.Generator, c: int, xs: np.ndarray, ys: np.ndarray
    ) -> np.ndarray:
        """Class ``c``'s ±1 texture at the given pixels, with a random phase for this region."""
        period, angle = self._periods[c], self._angles[c]
        u = xs * np.cos(angle) + ys * np.sin(angle)
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        phase_u, phase_v = rng.uniform(0, period, 2)
        kind = self._kinds[c]
        if kind == 0:
            wave = np.sin(2 * np.pi * (u + phase_u) / period)
        elif kind == 1:
            wave = np.sin(2 * np.pi * (u + phase_u) / period) * np.sin(
                2 * np.pi * (v + phase_v) / period
            )
        else:
            ox, oy = rng.uniform(0, self.size[1]), rng.uniform(0, self.size[0])
            wave = np.sin(2 * np.pi * (np.hypot(xs - ox, ys - oy) + phase_u) / period)
        return np.where(wave >= 0, 1.0, -1.0).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_images={self.num_images}, size={self.size}, "
            f"num_classes={self.num_classes}, seed={self.seed}, split={self.split!r})"
        )
