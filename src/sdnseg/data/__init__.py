"""Datasets, mmseg-style augmentation and the Lightning data module.

Every dataset yields ``{"image": Image uint8 (3, H, W), "mask": Mask int64 (H, W), "path": str}``
with train ids in the mask and 255 for ignored pixels; see :mod:`sdnseg.data.datasets`.
"""

from sdnseg.data.datamodule import (
    ResumableRandomSampler,
    SegmentationDataModule,
    collate_segmentation,
)
from sdnseg.data.datasets import (
    ADE20K,
    DATASETS,
    IGNORE_INDEX,
    CamVid,
    Cityscapes,
    SegmentationDataset,
    SegmentationFolder,
    build_dataset,
    default_palette,
    read_image,
    read_mask,
)
from sdnseg.data.synthetic import SyntheticShapes
from sdnseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KeepRatioResize,
    PadToSize,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRatioResize,
    eval_transforms,
    train_transforms,
)

__all__ = [
    "ADE20K",
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CamVid",
    "Cityscapes",
    "KeepRatioResize",
    "PadToSize",
    "PhotoMetricDistortion",
    "RandomCropCatMax",
    "RandomRatioResize",
    "ResumableRandomSampler",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationFolder",
    "SyntheticShapes",
    "build_dataset",
    "collate_segmentation",
    "default_palette",
    "eval_transforms",
    "read_image",
    "read_mask",
    "train_transforms",
]
