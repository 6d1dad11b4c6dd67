"""The shared base of the file datasets: (image, mask) file pairs -> items.

Every dataset yields the same item, a dict with

- ``image``: :class:`torchvision.tv_tensors.Image`, uint8, (3, H, W), RGB;
- ``mask``: :class:`torchvision.tv_tensors.Mask`, int64, (H, W), train ids in
  ``[0, num_classes)`` and :data:`~sdnseg.data.info.IGNORE_INDEX` (255) for pixels that no loss or
  metric counts;
- ``path``: the image path as a string;

then runs the optional ``transforms`` callable on that dict (see :mod:`sdnseg.data.transforms`).
Each dataset carries ``classes`` (names), ``palette`` (one RGB tuple per class), ``num_classes``
and ``ignore_index``.

When problems are found:

- at construction: a missing root or split folder, a split with no images, an image without a mask
  and a mask without an image (file lists are scanned once, then only indexed);
- when an item is loaded, naming the file: an unreadable file, a mask that is not single-channel,
  a mask whose size differs from its image, class ids outside ``[0, num_classes) ∪ {255}``;
- :meth:`SegmentationDataset.verify` loads every item once, so all of the above is checked upfront.

Missing files raise :class:`FileNotFoundError`; bad contents raise :class:`ValueError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from sdnseg.data.info import IGNORE_INDEX, DatasetInfo, Item, Palette, Transform
from sdnseg.data.io import IMAGE_EXTENSIONS, read_image, read_mask

__all__ = ["SegmentationDataset", "check_ids", "existing_dir", "shown", "subfolders"]


def check_ids(mask: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise if ``mask`` holds values outside ``[0, num_classes) ∪ {IGNORE_INDEX}``."""
    bad = (mask < 0) | ((mask >= num_classes) & (mask != IGNORE_INDEX))
    if bad.any():
        values = np.unique(mask[bad])
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"mask {path} has class ids [{shown}] outside [0, {num_classes}) "
            f"and the ignore index {IGNORE_INDEX}"
        )


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` expanded, or :class:`FileNotFoundError` naming ``what`` if it is no directory."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} is not a directory: {path}")
    return path


def subfolders(path: Path) -> list[str]:
    """Sorted names of the folders in ``path`` (none if ``path`` is missing)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def by_stem(folder: Path, suffixes: Iterable[str], what: str) -> dict[str, Path]:
    """The files of ``folder`` ending in ``suffixes`` (any case), keyed by stem."""
    suffixes = tuple(s.lower() for s in suffixes)
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (path.is_file() and path.suffix.lower() in suffixes):
            continue
        if path.stem in out:
            raise ValueError(f"two {what} files share the name {path.stem!r} in {folder}")
        out[path.stem] = path
    return out


def shown(names: Sequence[object], limit: int = 5) -> str:
    """The first ``limit`` names, comma-separated, and how many more (for error messages)."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(str(name) for name in names[:limit]) + more


def _pair(
    images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path
) -> list[tuple[Path, Path]]:
    """Pair images and masks by key; raise naming the unmatched files on either side."""
    if not images:
        raise FileNotFoundError(f"no images found in {image_dir}")
    lonely_images = sorted(str(images[k]) for k in images.keys() - masks.keys())
    if lonely_images:
        raise FileNotFoundError(
            f"{len(lonely_images)} image(s) without a mask in {mask_dir}: {shown(lonely_images)}"
        )
    lonely_masks = sorted(str(masks[k]) for k in masks.keys() - images.keys())
    if lonely_masks:
        raise FileNotFoundError(
            f"{len(lonely_masks)} mask(s) without an image in {image_dir}: {shown(lonely_masks)}"
        )
    return [(images[k], masks[k]) for k in sorted(images)]


class SegmentationDataset(Dataset[Item]):
    """Base class: indexed (image, mask) file pairs, a class table and mask encoding.

    A subclass for a published layout sets ``NAME`` (for messages), ``CLASSES`` and ``PALETTE``,
    finds its pairs with :meth:`find_samples` and overrides :meth:`encode_mask` to turn stored
    label values into train ids (the default only checks that the ids are in range). A dataset
    whose classes are not fixed overrides :meth:`info` as well.

    Args:
        samples: (image path, mask path) pairs.
        classes: class names, index = train id.
        palette: one RGB tuple per class.
        transforms: callable applied to each item dict.
    """

    ignore_index: int = IGNORE_INDEX
    needs_root: ClassVar[bool] = True
    options: ClassVar[tuple[str, ...]] = ()
    NAME: ClassVar[str] = "dataset"
    CLASSES: ClassVar[tuple[str, ...]] = ()
    PALETTE: ClassVar[Sequence[tuple[int, int, int]]] = ()

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        transforms: Transform | None = None,
    ) -> None:
        described = DatasetInfo(tuple(classes), tuple(palette))  # checks one colour per class
        self.samples = list(samples)
        self.classes = described.classes
        self.palette: Palette = list(described.palette)
        self.transforms = transforms

    @classmethod
    def info(cls, root: str | Path | None = None, **options: Any) -> DatasetInfo:
        """The fixed class table of this dataset (``root`` and ``options`` do not change it)."""
        return DatasetInfo(cls.CLASSES, tuple(cls.PALETTE))

    @classmethod
    def build(
        cls,
        root: str | Path | None = None,
        split: str = "train",
        transforms: Transform | None = None,
        **options: Any,
    ) -> SegmentationDataset:
        """The uniform constructor of :class:`~sdnseg.data.info.DatasetClass`."""
        if root is None:
            raise ValueError(f"{cls.NAME} needs a root folder")
        return cls(root, split, transforms=transforms, **options)

    @classmethod
    def find_samples(
        cls,
        split: str,
        image_dir: Path,
        mask_dir: Path,
        splits_found: Callable[[Path], list[str]] = subfolders,
        hint: str = "",
    ) -> list[tuple[Path, Path]]:
        """The (image, mask) pairs of ``split``, matched by :meth:`index_files` keys.

        Raises :class:`FileNotFoundError` naming a missing folder and the splits found beside it
        (``splits_found(parent)``, ``hint`` appended), or the unmatched files.
        """
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{cls.NAME} split {split!r} needs {folder}; splits found in "
                    f"{folder.parent}: {splits_found(folder.parent)}{hint}"
                )
        images = cls.index_files(image_dir, "image")
        masks = cls.index_files(mask_dir, "mask")
        return _pair(images, masks, image_dir, mask_dir)

    @classmethod
    def index_files(cls, folder: Path, kind: str) -> dict[str, Path]:
        """The ``kind`` (``"image"`` or ``"mask"``) files of ``folder`` by the key that pairs
        them: by default images of :data:`IMAGE_EXTENSIONS` and PNG masks, keyed by stem."""
        suffixes = IMAGE_EXTENSIONS if kind == "image" else (".png",)
        return by_stem(folder, suffixes, kind)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def encode_mask(cls, raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
        """Map stored label values to train ids; raise ``ValueError`` naming ``path`` if invalid.

        A class method, so that label files can be encoded without a dataset on disk (e.g. by
        ``sdnseg evaluate``); ``num_classes`` is the dataset's class count.
        """
        check_ids(raw, num_classes, path)
        return raw

    def load(self, index: int) -> Item:
        """The item at ``index`` before transforms."""
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        raw = read_mask(mask_path)
        if tuple(raw.shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                f"{image_path} is {image.shape[-1]}x{image.shape[-2]}"
            )
        mask = self.encode_mask(raw, mask_path, self.num_classes)
        return {
            "image": image,
            "mask": tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64))),
            "path": str(image_path),
        }

    def __getitem__(self, index: int) -> Item:
        item = self.load(index)
        return self.transforms(item) if self.transforms is not None else item

    def verify(self) -> None:
        """Load every item once (without transforms); raise on the first bad file."""
        for index in range(len(self)):
            self.load(index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_items={len(self)}, num_classes={self.num_classes})"
