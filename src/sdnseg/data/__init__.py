"""Datasets, mmseg-style augmentation, image reading and batching (no Lightning here: the data
module and its resumable sampler are training's, in :mod:`sdnseg.engine`).

Every dataset yields ``{"image": Image uint8 (3, H, W), "mask": Mask int64 (H, W), "path": str}``
with train ids in the mask and 255 for ignored pixels; see :mod:`sdnseg.data.base`. Each class in
:data:`DATASETS` describes itself with a :class:`DatasetInfo` (:mod:`sdnseg.data.info`); adding a
dataset means one module holding its class and one line in :data:`DATASETS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from sdnseg.data.ade20k import ADE20K
from sdnseg.data.base import SegmentationDataset
from sdnseg.data.camvid import CamVid
from sdnseg.data.cityscapes import Cityscapes
from sdnseg.data.collate import collate_segmentation
from sdnseg.data.folder import SegmentationFolder
from sdnseg.data.info import IGNORE_INDEX, DatasetClass, DatasetInfo, default_palette
from sdnseg.data.io import IMAGE_EXTENSIONS, read_image, read_mask
from sdnseg.data.segfix_targets import DIRECTIONS, SegFixTargets, segfix_target_maps, segfix_targets
from sdnseg.data.synthetic import SyntheticShapes
from sdnseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KeepRatioResize,
    PadToSize,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRatioResize,
    denormalize,
    eval_transforms,
    train_transforms,
)

__all__ = [
    "ADE20K",
    "DATASETS",
    "DIRECTIONS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "CamVid",
    "Cityscapes",
    "DatasetClass",
    "DatasetInfo",
    "KeepRatioResize",
    "PadToSize",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomRatioResize",
    "SegmentationDataset",
    "SegFixTargets",
    "SegmentationFolder",
    "SyntheticShapes",
    "build_dataset",
    "collate_segmentation",
    "dataset_class",
    "default_palette",
    "denormalize",
    "eval_transforms",
    "read_image",
    "read_mask",
    "segfix_target_maps",
    "segfix_targets",
    "train_transforms",
]

DATASETS: dict[str, DatasetClass] = {
    "synthetic": SyntheticShapes,
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "folder": SegmentationFolder,
}


def dataset_class(name: str) -> DatasetClass:
    """The class of :data:`DATASETS` called ``name``; ``ValueError`` listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def build_dataset(
    name: str, root: str | Path | None = None, split: str = "train", **kwargs: Any
) -> Dataset:
    """Build a dataset by name: one of :data:`DATASETS` (``root`` is unused for synthetic)."""
    cls = dataset_class(name)
    if cls.needs_root and root is None:
        raise ValueError(f"dataset {name!r} needs a root folder")
    return cls.build(root, split, **kwargs)
