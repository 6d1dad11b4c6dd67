"""The images ``sdnseg predict`` labels: a file, a folder or a glob, with masks when they exist.

Each item holds the evaluation-pipeline image (resized, normalised), the original RGB image (for
the overlay and the CRF), its size and path, and the mask when one is found: in ``mask_dir``
(same file stem, ``.png``), else beside the image in the SegNet/CamVid layout (``val/x.png`` ->
``valannot/x.png``) or the folder layout (``images/val/x.jpg`` -> ``masks/val/x.png``). Masks
must hold train ids; values outside ``[0, num_classes)`` count as unlabelled.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from sdnseg.data.io import IMAGE_EXTENSIONS, read_image, read_mask
from sdnseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms

__all__ = ["ImageFiles", "find_mask", "list_images", "predict_loader"]


def list_images(spec: str | Path) -> list[Path]:
    """Image files named by ``spec``: one file, every image in a folder, or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    else:
        files = [
            Path(p) for p in glob.glob(str(path), recursive=True)
            if Path(p).suffix.lower() in IMAGE_EXTENSIONS
        ]  # fmt: skip
    if not files:
        raise FileNotFoundError(
            f"no images found at {spec} (a file, a folder or a glob; extensions "
            f"{', '.join(IMAGE_EXTENSIONS)})"
        )
    return sorted(files)


def find_mask(image: Path, mask_dir: str | Path | None = None) -> Path | None:
    """The mask of ``image``, or None (see the module docstring for where it is looked for)."""
    if mask_dir is not None:
        candidates = [Path(mask_dir) / f"{image.stem}.png"]
    else:
        folder = image.parent
        candidates = [folder.with_name(folder.name + "annot") / f"{image.stem}.png"]
        if folder.parent.name == "images":
            candidates.append(folder.parent.parent / "masks" / folder.name / f"{image.stem}.png")
    return next((c for c in candidates if c.is_file()), None)


class ImageFiles(Dataset[dict[str, Any]]):
    """Images to predict on, through the evaluation pipeline.

    Args:
        paths: image files.
        base_size, mean, std: as :func:`~sdnseg.data.eval_transforms`.
        masks: also load masks (None where not found).
        mask_dir: folder of masks named like the images.

    Items: ``image`` float32 (3, h, w), ``rgb`` uint8 (3, H, W), ``size`` (H, W), ``path`` str,
    ``mask`` int64 (H, W) or None; an unreadable file gives ``path`` and ``error`` only.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        base_size: Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        masks: bool = False,
        mask_dir: str | Path | None = None,
    ) -> None:
        self.paths = list(paths)
        self.transform = eval_transforms(base_size, mean, std)
        self.masks = masks
        self.mask_dir = mask_dir

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The item; for a file that cannot be read, ``{"path", "error"}`` instead, so that one
        bad file does not stop the others being predicted."""
        try:
            return self._load(self.paths[index])
        except (FileNotFoundError, ValueError) as err:
            return {"path": str(self.paths[index]), "error": str(err)}

    def _load(self, path: Path) -> dict[str, Any]:
        rgb = read_image(path)
        image = self.transform({"image": tv_tensors.Image(rgb)})["image"]
        mask = None
        if self.masks and (mask_path := find_mask(path, self.mask_dir)) is not None:
            mask = torch.from_numpy(read_mask(mask_path))
            if tuple(mask.shape) != tuple(rgb.shape[-2:]):
                raise ValueError(
                    f"mask {mask_path} is {tuple(mask.shape)} but image {path} is "
                    f"{tuple(rgb.shape[-2:])}"
                )
        return {
            "image": image.as_subclass(torch.Tensor),
            "rgb": rgb.as_subclass(torch.Tensor),
            "size": torch.tensor(rgb.shape[-2:]),
            "path": str(path),
            "mask": mask,
        }


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    (item,) = items  # batch size 1: images differ in size
    if "error" in item:
        return {"path": [item["path"]], "error": [item["error"]]}
    batch = {key: item[key][None] for key in ("image", "rgb", "size")}
    batch["path"] = [item["path"]]
    batch["mask"] = [item["mask"]]
    return batch


def predict_loader(dataset: ImageFiles, num_workers: int = 0) -> DataLoader:
    """Batches of one image (sizes differ), in file order."""
    return DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=_collate)
