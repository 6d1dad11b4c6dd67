"""Cityscapes fine annotations, 19 train ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sdnseg.data.base import SegmentationDataset, check_ids, existing_dir
from sdnseg.data.info import IGNORE_INDEX, Transform

__all__ = ["Cityscapes"]


def _cityscapes_lut() -> np.ndarray:
    # Official labelIds -> trainIds table (cityscapesscripts/helpers/labels.py); all else ignored.
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    for label_id, train_id in {
        7: 0,
        8: 1,
        11: 2,
        12: 3,
        13: 4,
        17: 5,
        19: 6,
        20: 7,
        21: 8,
        22: 9,
        23: 10,
        24: 11,
        25: 12,
        26: 13,
        27: 14,
        28: 15,
        31: 16,
        32: 17,
        33: 18,
    }.items():
        lut[label_id] = train_id
    return lut


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations, 19 train ids.

    Layout: ``leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`` with
    ``gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png`` (used when present, values checked)
    or else ``{name}_gtFine_labelIds.png`` (mapped with the official table; every id outside the
    19 train classes, including license plate -1, becomes 255).

    Args:
        root: folder holding ``leftImg8bit`` and ``gtFine``.
        split: ``train``, ``val``, ``test`` or any folder present in both.
        transforms: callable applied to each item dict.
    """

    NAME = "Cityscapes"
    CLASSES = (
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    )
    PALETTE = [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ]
    LABEL_ID_TO_TRAIN_ID = _cityscapes_lut()
    IMAGE_SUFFIX = "_leftImg8bit.png"
    TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
    LABEL_ID_SUFFIX = "_gtFine_labelIds.png"

    def __init__(
        self, root: str | Path, split: str = "train", transforms: Transform | None = None
    ) -> None:
        root = existing_dir(root, "Cityscapes root")
        samples = self.find_samples(split, root / "leftImg8bit" / split, root / "gtFine" / split)
        super().__init__(samples, self.CLASSES, self.PALETTE, transforms)
        self.root, self.split = root, split

    @classmethod
    def index_files(cls, folder: Path, kind: str) -> dict[str, Path]:
        """``{city}/{name}`` -> file; for masks ready train ids win over label ids."""
        if kind == "image":
            suffixes = (cls.IMAGE_SUFFIX,)
        else:  # later suffixes override earlier ones
            suffixes = (cls.LABEL_ID_SUFFIX, cls.TRAIN_ID_SUFFIX)
        out: dict[str, Path] = {}
        for suffix in suffixes:
            for path in sorted(folder.glob(f"*/*{suffix}")):
                out[f"{path.parent.name}/{path.name[: -len(suffix)]}"] = path
        return out

    @classmethod
    def encode_mask(cls, raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
        if path.name.endswith(cls.TRAIN_ID_SUFFIX):
            check_ids(raw, num_classes, path)
            return raw
        if raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"mask {path} has label ids outside 0..255: {raw.min()}..{raw.max()}")
        return cls.LABEL_ID_TO_TRAIN_ID[raw]
