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
import sys
from pathlib import Path

from sdnseg.evaluation.evaluate import Evaluation, evaluate_folders
from sdnseg.evaluation.labels import DATASET_CHOICES, LabelConventions, label_conventions
from sdnseg.evaluation.outputs import write_evaluation
from sdnseg.metrics import MetricSuite

__all__ = ["main", "parse_args"]


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


def _notes(evaluation: Evaluation, labels: LabelConventions, args: argparse.Namespace) -> list:
    pairs = evaluation.pairs
    notes = [
        f"{len(pairs.pairs)} images of {args.pred} against {args.gt} ({args.dataset}: "
        f"{labels.description}). Boundary IoU band {args.biou_dilation:g} "
        f"({'pixels' if args.biou_dilation >= 1 else 'of the image diagonal'})."
    ]
    if pairs.missing_predictions or pairs.missing_ground_truth:
        notes.append(
            f"Skipped (--allow-missing): {len(pairs.missing_predictions)} ground truth without "
            f"prediction, {len(pairs.missing_ground_truth)} predictions without ground truth; "
            "see evaluation.json."
        )
    return notes


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
        meta = {
            "prediction_dir": str(args.pred),
            "ground_truth_dir": str(args.gt),
            "dataset": args.dataset,
            "conventions": labels.description,
            "images": len(evaluation.pairs.pairs),
            "skipped": evaluation.skipped(),
        }
        paths = write_evaluation(
            args.output,
            evaluation.result,
            labels.classes,
            labels.palette,
            f"sdnseg evaluate: {args.pred}",
            meta,
            _notes(evaluation, labels, args),
            evaluation.worst,
            labels.ignore_index,
            args.images,
        )
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
