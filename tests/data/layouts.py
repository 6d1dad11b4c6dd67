"""Writers of tiny datasets in the real on-disk layouts (shared by the data and engine tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def blocky_mask(
    rng: np.random.Generator, height: int, width: int, values: list[int], block: int = 8
) -> np.ndarray:
    """Class map of ``block``-pixel squares drawn from ``values``."""
    grid = rng.choice(values, size=(-(-height // block), -(-width // block)))
    return np.kron(grid, np.ones((block, block), dtype=np.int64))[:height, :width]


def write_folder(root: Path) -> Path:
    """images/{split}/*.jpg|png + masks/{split}/*.png + classes.txt (3 classes), varied sizes."""
    rng = np.random.default_rng(3)
    sizes = {"train": [(24, 32), (24, 32), (24, 32), (24, 32)], "val": [(24, 32), (30, 20)]}
    for split, shapes in sizes.items():
        for i, (h, w) in enumerate(shapes):
            ext = ".jpg" if i % 2 else ".png"
            write_image(root / "images" / split / f"img{i}{ext}", random_image(rng, h, w))
            write_image(
                root / "masks" / split / f"img{i}.png", blocky_mask(rng, h, w, [0, 1, 2, 255])
            )
    (root / "classes.txt").write_text("background\nroad\n\ncar\n", encoding="utf-8")
    return root
