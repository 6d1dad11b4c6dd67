"""Figures: classical diffusion (Eq. 3–4), segmentation error maps (Fig. 1), SDN feature maps
(Fig. 6) and operator responses (Fig. 2); colour tables for label maps."""

from __future__ import annotations

from sdnseg.viz.figure import save_figure

__all__ = ["save_figure"]
