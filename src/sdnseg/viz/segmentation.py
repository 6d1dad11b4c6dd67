"""Segmentation figures: error maps (Figure 1 of the paper) and side-by-side model comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from sdnseg.viz.figure import save_figure
from sdnseg.viz.palette import colorize

ERROR_COLOUR = (255, 64, 64)


def error_map(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    ignore_index: int = 255,
    palette: Sequence[Sequence[int]] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: wrong pixels coloured, right and unlabelled ones black (the paper's Fig. 1).

    Wrong pixels take the colour of the predicted class when ``palette`` is given, else red.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ in shape")
    out = np.zeros((*pred.shape, 3), dtype=np.uint8)
    wrong = (pred != target) & (target != ignore_index)
    if palette is None:
        out[wrong] = ERROR_COLOUR
    else:
        colours = np.asarray(palette, dtype=np.uint8)
        out[wrong] = colours[np.clip(pred[wrong], 0, len(colours) - 1)]
    return out


def error_panel(
    pred: np.ndarray,
    target: np.ndarray,
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    image: np.ndarray | None = None,
    gap: int = 4,
) -> np.ndarray:
    """(H, k·W + gaps, 3) uint8: [image,] ground truth, prediction and :func:`error_map`, side by
    side (white gaps), for reports that show many images without a figure each."""
    panels = [] if image is None else [np.asarray(image, dtype=np.uint8)]
    panels += [
        colorize(np.where(target == ignore_index, 255, target), palette),
        colorize(pred, palette),
        error_map(pred, target, ignore_index, palette),
    ]
    if panels[0].shape != panels[-1].shape:
        raise ValueError(f"image {panels[0].shape} and labels {panels[-1].shape} differ in size")
    spacer = np.full((panels[0].shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([x for panel in panels for x in (panel, spacer)][:-1], axis=1)


def comparison_figure(
    path: str | Path,
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
) -> Path:
    """One row per image: image, ground truth, then each model's prediction and its error map.

    Args:
        images: (H, W, 3) uint8 RGB images.
        targets: (H, W) label maps.
        predictions: model name -> (H, W) label maps, one per image.
    """
    from matplotlib.figure import Figure

    names = list(predictions)
    cols = 2 + 2 * len(names)
    fig = Figure(figsize=(2.4 * cols, 2.4 * len(images)))
    axes = fig.subplots(len(images), cols, squeeze=False)
    for row, (image, target) in enumerate(zip(images, targets, strict=True)):
        panels = [("image", image), ("ground truth", colorize(target, palette))]
        for name in names:
            pred = predictions[name][row]
            errors = int(((pred != target) & (target != ignore_index)).sum())
            panels.append((name, colorize(pred, palette)))
            panels.append((f"{name} errors ({errors} px)", error_map(pred, target, ignore_index)))
        for ax, (title, panel) in zip(axes[row], panels, strict=True):
            ax.imshow(panel)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
