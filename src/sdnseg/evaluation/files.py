"""Pairing a folder of predicted label PNGs with a folder of ground-truth label PNGs.

Files are matched by a *key*: the file name without its extension and without the suffixes that
tell the kind of file apart in the published layouts and in other tools' outputs
(``_gtFine_labelTrainIds``, ``_gtFine_labelIds``, ``_leftImg8bit``, ...), found anywhere below
each folder. So a Cityscapes ground truth ``gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_
labelIds.png`` meets an mmsegmentation output ``frankfurt_000000_000294_leftImg8bit.png`` or an
sdnseg ``frankfurt_000000_000294_leftImg8bit_labels.png``.

A key found twice on one side, a prediction without ground truth and a ground truth without
prediction are errors naming the files; with ``allow_missing`` the unmatched ones are skipped and
counted instead. Never a silent partial score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sdnseg.data.base import shown

__all__ = ["KEY_SUFFIXES", "FilePairs", "file_key", "label_files", "pair_files"]

# Longest first, so that "_gtFine_labelTrainIds" wins over "_labelTrainIds".
KEY_SUFFIXES = (
    "_gtFine_labelTrainIds",
    "_gtFine_labelIds",
    "_leftImg8bit_labels",
    "_leftImg8bit",
    "_labelTrainIds",
    "_labelIds",
    "_labels",
    "_pred",
)
# Cityscapes files beside the labels that are not labels.
_NOT_LABELS = ("_gtFine_color", "_gtFine_instanceIds", "_color", "_overlay", "_errors")
# Where Cityscapes has both, the train ids win (as the Cityscapes loader does).
_PREFERRED = "_gtFine_labelTrainIds"


def file_key(path: Path) -> str:
    """The matching key of a label file (see the module docstring)."""
    stem = path.stem
    for suffix in KEY_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def label_files(folder: Path, what: str) -> dict[str, Path]:
    """The label PNGs below ``folder`` by key, one per key; ``what`` names the folder in errors."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    by_key: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.png")):
        if path.is_file() and not path.stem.endswith(_NOT_LABELS):
            by_key.setdefault(file_key(path), []).append(path)
    if not by_key:
        raise FileNotFoundError(f"no .png label files in the {what} folder {folder}")
    out = {}
    for key, paths in by_key.items():
        preferred = [p for p in paths if p.stem.endswith(_PREFERRED)]
        if len(paths) > 1 and len(preferred) != 1:
            raise ValueError(
                f"the {what} key {key!r} matches several files in {folder}: {shown(paths)}; "
                "keep one label file per image"
            )
        out[key] = preferred[0] if preferred else paths[0]
    return out


@dataclass
class FilePairs:
    """Matched (prediction, ground truth) files, in key order, and what was left unmatched."""

    pairs: list[tuple[Path, Path]]
    missing_predictions: list[Path] = field(default_factory=list)  # ground truth without one
    missing_ground_truth: list[Path] = field(default_factory=list)  # prediction without one


def pair_files(pred_dir: str | Path, gt_dir: str | Path, allow_missing: bool = False) -> FilePairs:
    """Match every prediction with its ground truth.

    Raises:
        FileNotFoundError: a folder is missing or empty, or (without ``allow_missing``) a file
            has no partner on the other side.
        ValueError: two files of one side share a key.
    """
    preds = label_files(Path(pred_dir), "prediction")
    gts = label_files(Path(gt_dir), "ground-truth")
    no_pred = [gts[k] for k in sorted(gts.keys() - preds.keys())]
    no_gt = [preds[k] for k in sorted(preds.keys() - gts.keys())]
    if not allow_missing:
        if no_pred:
            raise FileNotFoundError(
                f"{len(no_pred)} ground-truth file(s) have no prediction in {pred_dir}: "
                f"{shown(no_pred)} (--allow-missing skips and counts them)"
            )
        if no_gt:
            raise FileNotFoundError(
                f"{len(no_gt)} prediction(s) have no ground truth in {gt_dir}: {shown(no_gt)} "
                "(--allow-missing skips and counts them)"
            )
    common = sorted(preds.keys() & gts.keys())
    if not common:
        raise FileNotFoundError(
            f"no prediction in {pred_dir} matches a ground-truth file in {gt_dir} (keys are file "
            f"names without {', '.join(KEY_SUFFIXES[:3])}, ...)"
        )
    return FilePairs([(preds[k], gts[k]) for k in common], no_pred, no_gt)
