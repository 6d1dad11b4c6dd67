"""Writing figures, the one way every sdnseg figure reaches the disk.

The figures are :class:`matplotlib.figure.Figure` objects made directly, as matplotlib recommends
for library code: no pyplot state and no ``matplotlib.use``, so drawing one never switches the
user's backend nor registers a window. ``Figure.savefig`` picks the Agg canvas from the file's
suffix by itself. The figure modules import matplotlib inside their functions, so importing
:mod:`sdnseg.viz` (e.g. for :func:`~sdnseg.viz.segmentation.error_map` during training) does not
load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sdnseg.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["hide_ticks", "save_figure"]


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` atomically, in the format of its suffix, and return the path.

    Goes through :func:`sdnseg.io.atomic_write`: missing folders are made, a reader never sees a
    half-written file and a failed save leaves the previous file and no temporary one.
    """
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=dpi)
    return path


def hide_ticks(*axes: Axes) -> None:
    """Remove ticks but keep the frame, so that a uniform white image panel still shows."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
