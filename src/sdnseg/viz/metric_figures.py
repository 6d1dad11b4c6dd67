"""Figures of evaluation results: the normalised confusion matrix and the trimap IoU curve.

Both return a :class:`matplotlib.figure.Figure` made directly (never pyplot, never a backend
switch), for :func:`sdnseg.viz.save_figure` or :func:`figure_png`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_figure", "figure_png", "trimap_figure"]


def confusion_figure(
    confusion: Sequence[Sequence[int]] | np.ndarray, classes: Sequence[str]
) -> Figure:
    """Row-normalised confusion matrix: entry (t, p) is the fraction of class-t pixels predicted
    as p (rows of classes absent from the target stay empty)."""
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(
            f"confusion matrix of shape {counts.shape} does not fit {len(classes)} classes"
        )
    from matplotlib.figure import Figure

    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if len(classes) <= 25:  # beyond that the numbers are unreadable
        for (t, p), rate in np.ndenumerate(rates):
            if rate >= 0.005:
                colour = "white" if rate > 0.5 else "black"
                ax.text(p, t, f"{100 * rate:.0f}", ha="center", va="center", fontsize=6, c=colour)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row")
    fig.tight_layout()
    return fig


def trimap_figure(curves: Mapping[str, Mapping[int, float]]) -> Figure:
    """mIoU (percent) against the trimap band width (log scale), one line per named result."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for name, curve in curves.items():
        widths = sorted(curve)
        ax.plot(widths, [100 * curve[w] for w in widths], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("band width around target boundaries (px)")
    ax.set_ylabel("mIoU within the band (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for embedding in an HTML report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
