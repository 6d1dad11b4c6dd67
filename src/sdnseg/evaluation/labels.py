"""How ``sdnseg evaluate`` reads label files: the dataset's own conventions, as its loader has them.

The ground truth of a published dataset is encoded with the dataset class's own
``encode_mask`` (:mod:`sdnseg.data`): CamVid's void 11 becomes ignored, Cityscapes ``labelIds``
go through the official table to the 19 train ids (``labelTrainIds`` files are taken as they
are), ADE20K's 0 (other) becomes ignored and ``k`` becomes ``k − 1`` (reduce-zero-label).
Predictions hold train ids by default; with ``pred_ids="dataset"`` they are stored like the
ground truth (Cityscapes result PNGs in ``labelIds``, ADE20K in 1..150) and decoded the same way.
A ``folder`` dataset stores train ids and ``ignore_index``; its classes come from a
``classes.txt`` / ``classes.json`` or from ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdnseg.data import IGNORE_INDEX, SegmentationFolder, dataset_class, default_palette
from sdnseg.data.base import check_ids

__all__ = ["DATASET_CHOICES", "LabelConventions", "label_conventions"]

DATASET_CHOICES = ("camvid", "cityscapes", "ade20k", "folder")

Encode = Callable[[np.ndarray, Path], np.ndarray]


@dataclass(frozen=True)
class LabelConventions:
    """Classes, colours and the decoders of one evaluation; ignored pixels are 255 after decoding."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    encode_gt: Encode
    encode_pred: Encode | None
    description: str
    ignore_index: int = IGNORE_INDEX

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _folder_classes(classes: Path | None, num_classes: int | None) -> tuple[tuple[str, ...], list]:
    if classes is not None:
        root = classes if classes.is_dir() else classes.parent
        if not classes.is_dir() and classes.name not in ("classes.txt", "classes.json"):
            raise ValueError(f"--classes must be a classes.txt or classes.json file, got {classes}")
        names, palette = SegmentationFolder.read_classes(root)
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"--num-classes {num_classes} but {classes} lists {len(names)}")
        return names, palette
    if num_classes is None or num_classes < 1:
        raise ValueError("--dataset folder needs --num-classes N (or --classes classes.txt)")
    return tuple(str(i) for i in range(num_classes)), default_palette(num_classes)


def label_conventions(
    dataset: str,
    num_classes: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    classes: Path | None = None,
    pred_ids: str = "train",
) -> LabelConventions:
    """The conventions of ``dataset`` (one of :data:`DATASET_CHOICES`), see the module docstring."""
    if dataset not in DATASET_CHOICES:
        raise ValueError(f"dataset must be one of {DATASET_CHOICES}, got {dataset!r}")
    if pred_ids not in ("train", "dataset"):
        raise ValueError(f"pred_ids must be 'train' or 'dataset', got {pred_ids!r}")
    if dataset == "folder":
        names, palette = _folder_classes(classes, num_classes)
        count = len(names)

        def encode(raw: np.ndarray, path: Path) -> np.ndarray:
            if ignore_index != IGNORE_INDEX:
                raw = np.where(raw == ignore_index, IGNORE_INDEX, raw)
            check_ids(raw, count, path)
            return raw

        description = f"train ids as stored, {ignore_index} ignored"
    else:
        cls = dataset_class(dataset)
        info = cls.info()
        names, palette, count = info.classes, info.palette, info.num_classes

        def encode(raw: np.ndarray, path: Path) -> np.ndarray:
            return cls.encode_mask(raw, path, count)

        description = f"ground truth decoded as the {cls.__name__} loader does"
    if pred_ids == "dataset":
        description += "; predictions decoded the same way"
    return LabelConventions(
        tuple(names),
        tuple(tuple(int(v) for v in c) for c in palette),
        encode,
        encode if pred_ids == "dataset" else None,
        description,
    )
