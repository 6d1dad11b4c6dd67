"""SegmentationFolder: your own data in ``images/{split}`` and ``masks/{split}``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdnseg.data.base import SegmentationDataset, existing_dir
from sdnseg.data.info import DatasetInfo, Palette, Transform, default_palette

__all__ = ["SegmentationFolder"]


class SegmentationFolder(SegmentationDataset):
    """Your own data: ``images/{split}/x.jpg|png`` with ``masks/{split}/x.png``.

    Masks are single-channel PNGs of class ids, 255 = ignore; other ids outside
    ``[0, num_classes)`` raise when the item is loaded. Class names come from, in order of
    precedence: the ``classes`` argument; ``root/classes.json``; ``root/classes.txt`` (one name per
    line, blank lines skipped). ``classes.json`` is either a list of ``{"name": str, "color":
    [r, g, b]}`` or ``{"classes": [names], "palette": [[r, g, b], ...]}`` (palette optional).
    Without colours the :func:`~sdnseg.data.info.default_palette` is used.

    Args:
        root: dataset root.
        split: subfolder of ``images`` and ``masks``.
        classes: class names, overriding any file in ``root``.
        palette: one RGB colour per class, overriding the file's.
        transforms: callable applied to each item dict.
    """

    NAME = "dataset"
    options = ("classes", "palette")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        transforms: Transform | None = None,
    ) -> None:
        root = existing_dir(root, "dataset root")
        described = self.info(root, classes=classes, palette=palette)
        samples = self.find_samples(split, root / "images" / split, root / "masks" / split)
        super().__init__(samples, described.classes, described.palette, transforms)
        self.root, self.split = root, split

    @classmethod
    def info(
        cls,
        root: str | Path | None = None,
        *,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        **options: Any,
    ) -> DatasetInfo:
        """Classes from the ``classes`` argument or else the root's class file (see above)."""
        if classes is not None:
            names = tuple(classes)
            colours = list(palette) if palette is not None else default_palette(len(names))
        elif root is None:
            raise ValueError("SegmentationFolder needs classes= or a root holding its class file")
        else:
            names, file_colours = cls.read_classes(existing_dir(root, "dataset root"))
            colours = list(palette) if palette is not None else file_colours
        if not names:
            raise ValueError(f"no class names given for {root}")
        return DatasetInfo(names, tuple(colours))

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


def _colours(raw: Sequence[Sequence[int]] | None, count: int) -> Palette:
    """``raw`` as int RGB tuples, or the default palette of ``count`` classes when absent."""
    if raw is None:
        return default_palette(count)
    return [tuple(int(v) for v in colour) for colour in raw]  # type: ignore[misc]


def _read_classes_json(path: Path) -> tuple[tuple[str, ...], Palette]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    try:
        if isinstance(data, list):
            names = tuple(str(entry["name"]) for entry in data)
            colours = [entry.get("color") for entry in data]
            palette = _colours(colours if all(c is not None for c in colours) else None, len(names))
        else:
            names = tuple(str(name) for name in data["classes"])
            palette = _colours(data.get("palette"), len(names))
    except (KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} must be a list of {{'name', 'color'}} objects or "
            f"{{'classes': [...], 'palette': [...]}}: {err!r}"
        ) from err
    if not names:
        raise ValueError(f"{path} lists no class names")
    if len(palette) != len(names) or any(len(c) != 3 for c in palette):
        raise ValueError(f"{path}: need one [r, g, b] colour per class ({len(names)} classes)")
    return names, palette
