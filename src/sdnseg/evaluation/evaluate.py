"""Scoring folders of label PNGs: any model's predictions against a dataset's ground truth.

:func:`evaluate_folders` pairs the files (:mod:`sdnseg.evaluation.files`), reads each pair,
turns stored values into train ids the way the dataset loaders do (an ``encode`` callable per
side), checks them, feeds :class:`~sdnseg.metrics.MetricSuite`, and keeps the ``top_k`` images
with the largest boundary error (lowest per-image Boundary IoU) for the report.

Every problem is an error naming the file: an unreadable PNG, a prediction whose size differs
from its ground truth, a predicted id outside ``[0, num_classes)``, a ground-truth id that is
neither a class nor ignored. A file missing on one side is an error too unless
``allow_missing``, in which case it is skipped and counted in the result.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sdnseg.data import read_mask
from sdnseg.evaluation.files import FilePairs, file_key, pair_files
from sdnseg.metrics import MetricSuite, SuiteResult
from sdnseg.metrics.bands import boundary_iou_counts

__all__ = ["Evaluation", "WorstImage", "WorstImages", "evaluate_folders", "score_pairs"]

Encode = Callable[[np.ndarray, Path], np.ndarray]


@dataclass
class WorstImage:
    """One of the images with the largest boundary error."""

    key: str
    prediction: Path | None
    ground_truth: Path | None
    boundary_iou: float
    pred: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)


class WorstImages:
    """The ``k`` images of lowest per-image mean Boundary IoU seen so far, with their label maps.

    Args:
        k: how many to keep (0: none, and :meth:`add` costs nothing).
        num_classes, dilation, ignore_index: as the :class:`~sdnseg.metrics.BoundaryIoU` scored.
    """

    def __init__(self, k: int, num_classes: int, dilation: float, ignore_index: int | None) -> None:
        self.k, self.num_classes = k, num_classes
        self.dilation, self.ignore_index = dilation, ignore_index
        self._heap: list[tuple[float, int, WorstImage]] = []
        self._seen = 0

    def add(self, key: str, pred: np.ndarray, target: np.ndarray, **paths: Path) -> None:
        """Score one image (H, W) and keep it if it is among the k worst."""
        if self.k <= 0:
            return
        index, self._seen = self._seen, self._seen + 1
        p, t = torch.from_numpy(pred)[None], torch.from_numpy(target)[None]
        inter, union = boundary_iou_counts(p, t, self.num_classes, self.dilation, self.ignore_index)
        valid = union > 0
        if not valid.any():
            return  # no band in either map: no boundary to be wrong about
        score = float((inter[valid] / union[valid]).mean())
        item = WorstImage(
            key, paths.get("prediction"), paths.get("ground_truth"), score, pred, target
        )
        # Keyed by the negated score, the heap's top is the best image kept so far: popping it
        # keeps the k lowest.
        heapq.heappush(self._heap, (-score, -index, item))
        if len(self._heap) > self.k:
            heapq.heappop(self._heap)

    def items(self) -> list[WorstImage]:
        """Worst (lowest score) first; ties in the order seen."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


@dataclass
class Evaluation:
    """Scores of a folder pair, the files that were scored and skipped, the worst images."""

    result: SuiteResult
    pairs: FilePairs
    worst: list[WorstImage]

    def skipped(self) -> dict[str, list[str]]:
        """The unmatched files (``allow_missing``), by side."""
        return {
            "ground_truth_without_prediction": [str(p) for p in self.pairs.missing_predictions],
            "prediction_without_ground_truth": [str(p) for p in self.pairs.missing_ground_truth],
        }


def _check_prediction(pred: np.ndarray, num_classes: int, path: Path) -> None:
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        bad = np.unique(pred[(pred < 0) | (pred >= num_classes)])[:10].tolist()
        raise ValueError(
            f"prediction {path} holds ids {bad} outside [0, {num_classes - 1}] (predictions must "
            "be train ids; use --pred-ids dataset for files in the dataset's own label ids)"
        )


def score_pairs(
    pairs: Iterable[tuple[Path, Path]],
    suite: MetricSuite,
    encode_gt: Encode,
    encode_pred: Encode | None = None,
    top_k: int = 0,
    progress: Callable[[], None] | None = None,
) -> list[WorstImage]:
    """Update ``suite`` with every pair; return the ``top_k`` images of lowest per-image mBIoU.

    Args:
        pairs: (prediction file, ground-truth file).
        suite: the metrics to update.
        encode_gt: stored ground-truth values -> train ids and ``suite``'s ignore index.
        encode_pred: stored predicted values -> train ids (None: stored values are train ids).
        top_k: how many worst images to keep (with their label maps, for error maps).
        progress: called once per pair.
    """
    num_classes = suite.seg.num_classes
    worst = WorstImages(top_k, num_classes, suite.biou.dilation, suite.seg.ignore_index)
    for pred_path, gt_path in pairs:
        target = encode_gt(read_mask(gt_path), gt_path)
        pred = read_mask(pred_path)
        if encode_pred is not None:
            pred = encode_pred(pred, pred_path)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction {pred_path} is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground "
                f"truth {gt_path} is {target.shape[1]}x{target.shape[0]}"
            )
        _check_prediction(pred, num_classes, pred_path)
        suite.update(torch.from_numpy(pred)[None], torch.from_numpy(target)[None])
        worst.add(file_key(gt_path), pred, target, prediction=pred_path, ground_truth=gt_path)
        if progress is not None:
            progress()
    return worst.items()


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    suite: MetricSuite,
    encode_gt: Encode,
    encode_pred: Encode | None = None,
    allow_missing: bool = False,
    top_k: int = 8,
    progress: Callable[[int], Callable[[], None]] | None = None,
) -> Evaluation:
    """Pair, read, check and score two folders (see the module docstring).

    ``progress(total)`` may return a per-image callback (e.g. a progress bar's advance).
    """
    pairs = pair_files(pred_dir, gt_dir, allow_missing)
    tick = progress(len(pairs.pairs)) if progress is not None else None
    worst = score_pairs(pairs.pairs, suite, encode_gt, encode_pred, top_k, tick)
    return Evaluation(suite.compute(), pairs, worst)
