"""``sdnseg segfix``: refine any model's label PNGs with a trained SegFix network.

SegFix (Yuan et al., ECCV 2020) post-processes a prediction without knowing the model that made
it: its own network reads the image and moves each boundary pixel's label to it from a pixel
inside the segment (:mod:`sdnseg.inference.segfix`). This command does that for a folder of
label maps, given the images they were predicted from::

    sdnseg segfix --checkpoint segfix.ckpt --pred preds/ --images data/camvid/val --output fixed/
    sdnseg evaluate --pred fixed/ --gt data/camvid/valannot --dataset camvid

The label PNGs may come from ``sdnseg predict`` (``*_labels.png``), ``sdnseg test --report DIR
--report_predictions true`` or another library; they are matched with the images by the key of
:func:`sdnseg.evaluation.files.file_key`, and every prediction needs its image (an error names
the ones without, before any is refined). Each refined map keeps its prediction's relative path
and file name, written atomically as train ids (8-bit, 16-bit past 255). The checkpoint is one
of ``sdnseg fit --model.arch segfix_r18`` (or ``segfix_efflite2``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sdnseg.data.base import shown
from sdnseg.data.io import IMAGE_EXTENSIONS, read_image, read_mask
from sdnseg.evaluation.files import file_key, label_files
from sdnseg.evaluation.outputs import write_label_png
from sdnseg.inference.segfix import DISTANCE, THRESHOLD, SegFixRefiner, load_segfix

__all__ = ["image_files", "main", "refine_folder"]


def image_files(folder: Path) -> dict[str, Path]:
    """The images below ``folder`` by :func:`~sdnseg.evaluation.files.file_key`, one per key."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    by_key: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            by_key.setdefault(file_key(path), []).append(path)
    doubled = [paths for paths in by_key.values() if len(paths) > 1]
    if doubled:
        raise ValueError(
            f"{len(doubled)} image key(s) match several files in {folder}, e.g. "
            f"{shown(doubled[0])}; keep one image per name"
        )
    return {key: paths[0] for key, paths in by_key.items()}


def refine_folder(
    refiner: SegFixRefiner, pred_dir: Path, image_dir: Path, output: Path
) -> tuple[int, int, int]:
    """Refine every label PNG below ``pred_dir`` into ``output``; returns (maps, pixels changed,
    pixels)."""
    if output.resolve() == pred_dir.resolve():
        raise ValueError(f"--output {output} is the --pred folder: the predictions would be lost")
    preds = label_files(pred_dir, "prediction")
    images = image_files(image_dir)
    without = [preds[key] for key in sorted(preds.keys() - images.keys())]
    if without:
        raise FileNotFoundError(
            f"{len(without)} prediction(s) have no image in {image_dir}: {shown(without)}"
        )
    changed = total = 0
    for key in sorted(preds):
        labels = torch.from_numpy(read_mask(preds[key]))
        image = read_image(images[key])
        refined = refiner(image[None], labels[None])[0]
        write_label_png(output / preds[key].relative_to(pred_dir), refined.numpy())
        changed += int((refined != labels).sum())
        total += labels.numel()
    return len(preds), changed, total


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sdnseg segfix", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a SegFix checkpoint")
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted label PNGs")
    parser.add_argument("--images", required=True, type=Path, help="folder of their images")
    parser.add_argument("--output", required=True, type=Path, help="folder for the refined PNGs")
    parser.add_argument(
        "--threshold", type=float, default=THRESHOLD, help="boundary probability that moves"
    )
    parser.add_argument(
        "--distance",
        type=float,
        default=DISTANCE,
        help="offset length in pixels at the resolution the SegFix network sees (openseg: 2)",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the SegFix network")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        refiner = load_segfix(args.checkpoint, args.device, args.threshold, args.distance)
        maps, changed, total = refine_folder(refiner, args.pred, args.images, args.output)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    share = 100 * changed / max(total, 1)
    print(f"refined {maps} label maps into {args.output}: {changed} pixels changed ({share:.2f}%)")
    return 0
