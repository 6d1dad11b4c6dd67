"""What describes a dataset before any of its files are read: :class:`DatasetInfo`.

Every dataset class in :data:`sdnseg.data.DATASETS` follows :class:`DatasetClass`: it tells its
:class:`DatasetInfo` (classes, palette, ignore index, default training crop, whether all images
share one size) and builds a split from a root folder and options, so that the data module asks
the class instead of switching on the dataset's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from torch.utils.data import Dataset

__all__ = [
    "IGNORE_INDEX",
    "DatasetClass",
    "DatasetInfo",
    "Item",
    "Palette",
    "Transform",
    "default_palette",
]

IGNORE_INDEX = 255

Item = dict[str, Any]
Transform = Callable[[Item], Item]
Palette = list[tuple[int, int, int]]


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


@dataclass(frozen=True)
class DatasetInfo:
    """The description of a dataset that training needs before it loads an item.

    Args:
        classes: class names, index = train id.
        palette: one RGB colour per class.
        ignore_index: the mask value that no loss or metric counts.
        crop_size: default training crop (h, w).
        uniform_size: every image has the same size, so evaluation batches may hold as many
            images as training ones (otherwise full-size evaluation needs batch size 1).
    """

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX
    crop_size: tuple[int, int] = (512, 512)
    uniform_size: bool = False

    def __post_init__(self) -> None:
        # Normalised here because names and colours arrive as lists from JSON, YAML and callers.
        classes = tuple(str(name) for name in self.classes)
        palette = tuple((int(r), int(g), int(b)) for r, g, b in self.palette)
        if len(palette) != len(classes):
            raise ValueError(f"got {len(classes)} classes but {len(palette)} palette colours")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "palette", palette)
        object.__setattr__(self, "crop_size", (int(self.crop_size[0]), int(self.crop_size[1])))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class DatasetClass(Protocol):
    """What :data:`sdnseg.data.DATASETS` holds: a dataset class and its uniform constructor.

    ``options`` names the keyword options the class takes beyond root, split and transforms (a
    caller offering many options passes only these); ``needs_root`` says whether it reads files.
    """

    needs_root: ClassVar[bool]
    options: ClassVar[tuple[str, ...]]

    def info(self, root: str | Path | None = None, **options: Any) -> DatasetInfo:
        """The dataset's description, reading at most its class list, never its items."""
        ...

    def build(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transforms: Transform | None = None,
        **options: Any,
    ) -> Dataset[Item]:
        """The ``split`` of the dataset under ``root``."""
        ...
