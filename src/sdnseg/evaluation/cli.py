"""``sdnseg evaluate``: score any model's label PNGs against a dataset's ground truth.

::

    sdnseg evaluate --pred work_dirs/fcn/pred --gt data/cityscapes/gtFine/val --dataset cityscapes
    sdnseg evaluate --pred out/ --gt data/camvid/valannot --dataset camvid --images data/camvid/val
    sdnseg evaluate --pred out/ --gt masks/val --dataset folder --num-classes 5 --ignore-index 255

Writes ``<output>/evaluation.json`` (every score, per class, the confusion matrix, what was
skipped), ``<output>/per_class.csv`` and ``<output>/report.html`` (a self-contained page with
the tables, the trimap curve, the confusion matrix and error maps of the images with the largest
boundary error), each atomically, and prints the headline scores.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from sdnseg.evaluation.evaluate import Evaluation, evaluate_folders
from sdnseg.evaluation.labels import DATASET_CHOICES, LabelConventions, label_conventions
from sdnseg.evaluation.report import ReportImage, html_report
from sdnseg.io import atomic_write
from sdnseg.metrics import MetricSuite

__all__ = ["main", "parse_args", "write_outputs"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sdnseg evaluate", description=__doc__.splitlines()[0].strip("`: ")
    )
    parser.add_argument("--pred", required=True, type=Path, help="folder of predicted label PNGs")
    parser.add_argument("--gt", required=True, type=Path, help="folder of ground-truth PNGs")
    parser.add_argument("--dataset", required=True, choices=DATASET_CHOICES)
    parser.add_argument("--num-classes", type=int, help="classes (folder datasets)")
    parser.add_argument("--ignore-index", type=int, default=255, help="void label (folder)")
    parser.add_argument("--classes", type=Path, help="classes.txt / classes.json (folder)")
    parser.add_argument(
        "--pred-ids",
        choices=("train", "dataset"),
        default="train",
        help="predictions hold train ids 0..C-1 (default), or the dataset's own label ids "
        "(Cityscapes labelIds, ADE20K 1..150), mapped as the ground truth is",
    )
    parser.add_argument("--images", type=Path, help="folder of the RGB images, for error maps")
    parser.add_argument("--output", type=Path, default=Path("outputs/evaluate"))
    parser.add_argument("--allow-missing", action="store_true", help="skip unmatched files")
    parser.add_argument("--top-k", type=int, default=8, help="error maps in the report")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1, 3])
    parser.add_argument("--biou-dilation", type=float, default=0.02)
    parser.add_argument("--trimap-widths", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.top_k < 0:
        parser.error(f"--top-k must be >= 0, got {args.top_k}")
    return args


def _find_image(folder: Path | None, key: str) -> Path | None:
    if folder is None:
        return None
    for suffix in (".png", ".jpg", ".jpeg"):
        for name in (key, f"{key}_leftImg8bit"):
            found = list(folder.rglob(name + suffix))
            if found:
                return found[0]
    return None


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _report_images(evaluation: Evaluation, labels: LabelConventions, images: Path | None):
    from sdnseg.data import read_image
    from sdnseg.viz.segmentation import error_panel

    out = []
    for item in evaluation.worst:
        path = _find_image(images, item.key)
        rgb = None
        if path is not None:
            rgb = read_image(path).permute(1, 2, 0).numpy()
            if rgb.shape[:2] != item.target.shape:
                rgb = None  # a resized copy of the image: show the labels alone
        panel = error_panel(item.pred, item.target, labels.palette, labels.ignore_index, rgb)
        caption = f"{item.key}: mBIoU {100 * item.boundary_iou:.1f}% ({item.prediction.name})"
        out.append(ReportImage(caption, _png(panel)))
    return out


def write_outputs(
    evaluation: Evaluation, labels: LabelConventions, args: argparse.Namespace
) -> dict[str, Path]:
    """The JSON, the per-class CSV and the HTML report under ``args.output``."""
    from sdnseg.viz.metric_figures import confusion_figure, figure_png, trimap_figure

    result = evaluation.result
    paths = {kind: args.output / name for kind, name in _OUTPUTS.items()}
    payload = {
        "prediction_dir": str(args.pred),
        "ground_truth_dir": str(args.gt),
        "dataset": args.dataset,
        "conventions": labels.description,
        **evaluation.to_dict(),
    }
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    columns = list(next(iter(result.per_class.values())))
    with atomic_write(paths["csv"]) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", *columns])
        for name, row in result.per_class.items():
            writer.writerow([name, *(f"{row[c]:.6f}" for c in columns)])
    figures = {
        "Trimap IoU": figure_png(trimap_figure({args.pred.name or "prediction": result.trimap})),
        "Confusion matrix (rows: ground truth)": figure_png(
            confusion_figure(result.confusion, labels.classes)
        ),
    }
    skipped = len(evaluation.pairs.missing_predictions) + len(evaluation.pairs.missing_ground_truth)
    notes = [
        f"{len(evaluation.pairs.pairs)} images of {args.pred} against {args.gt} ({args.dataset}: "
        f"{labels.description}).",
        "Boundary F: BF@t counts an image where a class is absent from both maps as F = 1 "
        "(GSCNN/SegFix); BF@t_skip leaves it out (SegNet). Boundary IoU band "
        f"{args.biou_dilation:g} ({'pixels' if args.biou_dilation >= 1 else 'of the diagonal'}).",
    ]
    if skipped:
        notes.append(
            f"Skipped (--allow-missing): {len(evaluation.pairs.missing_predictions)} ground "
            f"truth without prediction, {len(evaluation.pairs.missing_ground_truth)} "
            "predictions without ground truth; see evaluation.json."
        )
    page = html_report(
        result,
        f"sdnseg evaluate: {args.pred}",
        figures,
        _report_images(evaluation, labels, args.images),
        notes,
    )
    with atomic_write(paths["html"]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return paths


_OUTPUTS = {"json": "evaluation.json", "csv": "per_class.csv", "html": "report.html"}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console(stderr=True)
    try:
        labels = label_conventions(
            args.dataset, args.num_classes, args.ignore_index, args.classes, args.pred_ids
        )
        suite = MetricSuite(
            labels.num_classes,
            labels.classes,
            labels.ignore_index,
            tuple(args.tolerances),
            args.biou_dilation,
            tuple(args.trimap_widths),
        )
        with Progress(console=console, disable=args.no_progress, transient=True) as bar:

            def progress(total: int):
                task = bar.add_task("scoring", total=total)
                return lambda: bar.advance(task)

            evaluation = evaluate_folders(
                args.pred,
                args.gt,
                suite,
                labels.encode_gt,
                labels.encode_pred,
                args.allow_missing,
                args.top_k,
                progress,
            )
        paths = write_outputs(evaluation, labels, args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = Table(title=f"{len(evaluation.pairs.pairs)} images")
    table.add_column("metric")
    table.add_column("%", justify="right")
    for name, value in evaluation.result.headline.items():
        table.add_row(name, f"{100 * value:.2f}")
    Console().print(table)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
