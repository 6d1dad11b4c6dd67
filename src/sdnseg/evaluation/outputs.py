"""Writing an evaluation to disk: ``evaluation.json``, ``per_class.csv`` and ``report.html``.

Shared by ``sdnseg evaluate`` (folders of PNGs) and ``sdnseg validate|test --report DIR`` (an
sdnseg model's own predictions), so both give the same files. Each is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdnseg.evaluation.evaluate import WorstImage
from sdnseg.evaluation.report import ReportImage, html_report
from sdnseg.io import atomic_write
from sdnseg.metrics import SuiteResult

__all__ = ["OUTPUTS", "BOUNDARY_NOTE", "write_evaluation", "write_label_png"]

OUTPUTS = {"json": "evaluation.json", "csv": "per_class.csv", "html": "report.html"}
BOUNDARY_NOTE = (
    "Boundary F: BF@t counts an image where a class is absent from both maps as F = 1 "
    "(GSCNN/SegFix); BF@t_skip leaves it out (SegNet). Boundary IoU: inner bands of each class "
    "(Cheng et al. 2021); trimap: mIoU within w px of the ground truth's boundaries."
)


def write_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label map (H, W) of train ids as a grey PNG, 8-bit, or 16-bit where a label does
    not fit (150+ classes), atomically; ``sdnseg evaluate`` and ``sdnseg segfix`` read it back."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: a label map must be (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 65535):
        raise ValueError(f"{path}: labels must be in 0..65535, got {labels.min()}..{labels.max()}")
    dtype = np.uint8 if labels.size == 0 or labels.max() <= 255 else np.uint16
    with atomic_write(path) as tmp:
        Image.fromarray(labels.astype(dtype)).save(tmp, format="PNG")
    return Path(path)


def _find_image(folder: Path | None, key: str) -> Path | None:
    if folder is None:
        return None
    for suffix in (".png", ".jpg", ".jpeg"):
        for name in (key, f"{key}_leftImg8bit"):
            found = sorted(folder.rglob(name + suffix))
            if found:
                return found[0]
    return None


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _report_images(
    worst: Sequence[WorstImage],
    palette: Sequence[Sequence[int]],
    ignore_index: int,
    images: Path | None,
    rgb: dict[str, np.ndarray] | None,
) -> list[ReportImage]:
    from sdnseg.data import read_image
    from sdnseg.viz.segmentation import error_panel

    out = []
    for item in worst:
        image = (rgb or {}).get(item.key)
        if image is None and (path := _find_image(images, item.key)) is not None:
            image = read_image(path).permute(1, 2, 0).numpy()
        if image is not None and image.shape[:2] != item.target.shape:
            image = None  # a resized copy of the image: show the labels alone
        panel = error_panel(item.pred, item.target, palette, ignore_index, image)
        source = f" ({item.prediction.name})" if item.prediction is not None else ""
        caption = f"{item.key}: mBIoU {100 * item.boundary_iou:.1f}%{source}"
        out.append(ReportImage(caption, _png(panel)))
    return out


def write_evaluation(
    output: str | Path,
    result: SuiteResult,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    title: str,
    meta: dict[str, Any],
    notes: Sequence[str] = (),
    worst: Sequence[WorstImage] = (),
    ignore_index: int = 255,
    images: Path | None = None,
    rgb: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write the three files under ``output``; return their paths by kind.

    Args:
        output: folder (created).
        result: the scores.
        classes, palette: class names and colours (confusion matrix, error maps).
        title: the report's title.
        meta: extra JSON entries (where the data came from, what was skipped, ...).
        notes: lines under the report's title.
        worst: the images with the largest boundary error, shown as error maps.
        ignore_index: the unlabelled value of ``worst``'s targets.
        images: a folder to look the worst images' RGB files up in (by key), or None.
        rgb: the worst images' RGB arrays by key, when the caller has them.
    """
    from sdnseg.viz.metric_figures import confusion_figure, figure_png, trimap_figure

    paths = {kind: Path(output) / name for kind, name in OUTPUTS.items()}
    payload = {**meta, **result.to_dict()}
    payload["worst_boundary_iou"] = [
        {"key": w.key, "prediction": str(w.prediction or ""), "mBIoU": w.boundary_iou}
        for w in worst
    ]
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    columns = list(next(iter(result.per_class.values())))
    with atomic_write(paths["csv"]) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", *columns])
        for name, row in result.per_class.items():
            writer.writerow([name, *(f"{row[c]:.6f}" for c in columns)])
    figures = {
        "Trimap IoU": figure_png(trimap_figure({title: result.trimap})),
        "Confusion matrix (rows: ground truth)": figure_png(
            confusion_figure(result.confusion, classes)
        ),
    }
    page = html_report(
        result,
        title,
        figures,
        _report_images(worst, palette, ignore_index, images, rgb),
        [*notes, BOUNDARY_NOTE],
    )
    with atomic_write(paths["html"]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return paths
