"""The study report's own figures: validation curves, test bars and trimap curves.

Each is a ``matplotlib.figure.Figure`` made without pyplot (see :mod:`sdnseg.studies.report`),
from the report's summary and the finished results.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from sdnseg.studies.spec import Study

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _mean_by_epoch(results: list[dict], name: str, metric: str) -> tuple[list, list[float]]:
    """Epochs and the mean over seeds of ``val/<metric>`` (percent) of configuration ``name``."""
    by_epoch: dict[float, list[float]] = defaultdict(list)
    for result in results:
        if result["name"] == name:
            for row in result["history"]:
                if f"val/{metric}" in row:
                    by_epoch[row.get("epoch", 0)].append(row[f"val/{metric}"])
    epochs = sorted(by_epoch)
    return epochs, [100 * statistics.fmean(by_epoch[e]) for e in epochs]


def curves_figure(summary: dict, results: list[dict]) -> Figure:
    """Validation mIoU and BF@1px against epoch, one line per configuration (mean over seeds)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("mIoU", "BF@1px"), strict=True):
        for name in summary:
            epochs, means = _mean_by_epoch(results, name, metric)
            if epochs:
                ax.plot(epochs, means, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {metric} (%), mean over seeds")
    # Beside the plots: with the ablations there are too many lines to leave a free corner.
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def bars_figure(summary: dict) -> Figure:
    """Test mIoU, BF@1px and BF@3px per configuration: mean over seeds, std as error bar."""
    from matplotlib.figure import Figure

    names = list(summary)
    fig = Figure(figsize=(4 * 3, 0.45 * len(names) + 2))
    axes = fig.subplots(1, 3)
    for ax, metric in zip(axes, ("mIoU", "BF@1px", "BF@3px"), strict=True):
        means = [100 * summary[n][metric]["mean"] for n in names]
        stds = [100 * summary[n][metric]["std"] for n in names]
        stds = [0.0 if math.isnan(v) else v for v in stds]  # one seed: no error bar
        ax.barh(names, means, xerr=stds, capsize=3)
        ax.set_title(f"{metric} (%)")
        finite = [m for m in means if not math.isnan(m)]
        if finite:
            ax.set_xlim(max(0.0, min(finite) - 10), max(finite) + 5)
    fig.tight_layout()
    return fig


def trimap_widths(metrics: Iterable[str]) -> list[int]:
    """The band widths (px) of the ``trimap_mIoU@<w>px`` metrics among ``metrics``, ascending."""
    return sorted(
        int(m.removeprefix("trimap_mIoU@").removesuffix("px"))
        for m in metrics
        if m.startswith("trimap_mIoU@")
    )


def trimap_figure(summary: dict, paired_by_variant: dict) -> Figure:
    """mIoU inside a band around the true boundaries against the band's width (left), and each
    variant minus its baseline, mean ± std over paired seeds (right): a gain that concentrates
    near boundaries is largest at the narrow bands."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4))
    left, right = fig.subplots(1, 2)
    # One colour per configuration in both panels: a variant's difference is drawn in its colour.
    colour = {name: f"C{i % 10}" for i, name in enumerate(summary)}
    for name, entry in summary.items():
        widths = trimap_widths(entry)
        means = [100 * entry[f"trimap_mIoU@{w}px"]["mean"] for w in widths]
        if widths and not all(math.isnan(m) for m in means):
            left.plot(widths, means, marker=".", label=name, color=colour[name])
    for variant, entry in paired_by_variant.items():
        widths = trimap_widths(entry)
        means = [100 * entry[f"trimap_mIoU@{w}px"]["mean"] for w in widths]
        stds = [100 * entry[f"trimap_mIoU@{w}px"]["std"] for w in widths]
        if widths and not all(math.isnan(m) for m in means):
            stds = [0.0 if math.isnan(v) else v for v in stds]  # one pair: no error bar
            right.errorbar(
                widths,
                means,
                yerr=stds,
                marker=".",
                capsize=3,
                label=f"{variant} − {entry['baseline']}",
                color=colour.get(variant),
            )
    right.axhline(0.0, color="0.5", linewidth=0.8)
    widths_all = sorted({w for entry in summary.values() for w in trimap_widths(entry)})
    for ax, ylabel in (
        (left, "trimap mIoU (%), mean over seeds"),
        (right, "Δ vs baseline (points)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths_all, [str(w) for w in widths_all])
        ax.set_xlabel("band width around the true boundaries (px)")
        ax.set_ylabel(ylabel)
    left.legend(fontsize=7)
    right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def plots(
    study: Study, summary: dict, results: list[dict], paired_by_variant: dict
) -> dict[Path, Figure]:
    """The report's own figures, keyed by the file each is saved to beside ``study.results``;
    the trimap curves only when the runs were scored with them."""
    figures = {
        Path(f"{study.results}_curves.png"): curves_figure(summary, results),
        Path(f"{study.results}_bars.png"): bars_figure(summary),
    }
    if any(trimap_widths(entry) for entry in summary.values()):
        figures[Path(f"{study.results}_trimap.png")] = trimap_figure(summary, paired_by_variant)
    return figures
