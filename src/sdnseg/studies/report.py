"""The report of ``sdnseg study``: tables (mean ± std over seeds), paired differences, plots.

Values are fractions in the JSON and percent (differences in points) in the markdown.

Everything here but :func:`save_report` is pure: finished results (the ``result.json`` records
of :mod:`sdnseg.studies.runner`) go in, strings, dicts and ``matplotlib.figure.Figure`` objects
come out. :func:`build_report` assembles them into a :class:`Report`, and :func:`save_report`,
the one writer, puts it on disk. Figures are made as ``Figure`` objects, never through pyplot,
so drawing a report leaves the caller's matplotlib backend and open figures alone. This module
does not import the runner: a report can be redrawn from results alone (as
``tests/studies/test_report.py`` does from the committed ``camvid_study.json``).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdnseg.io import atomic_write
from sdnseg.studies.spec import Study

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = (
    "mIoU",
    "mIoU_ms",
    "BF@1px",
    "BF@3px",
    "BF@1px_skip",
    "BF@3px_skip",
    "BF@1px_ms",
    "BF@3px_ms",
)


def scored(results: list[dict]) -> list[dict]:
    """The results with segmentation metrics (fits and evaluation runs), which the tables
    compare; the others (a SegFix network, a command's output) are listed apart."""
    return [r for r in results if "mIoU" in r.get("test", {})]


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    # One seed has no spread: NaN, shown as a bare mean rather than a misleading ± 0.
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarise(results: list[dict]) -> dict[str, dict[str, Any]]:
    """Per configuration: seeds, mean and std of every metric, cost and time."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        groups[r["name"]].append(r)
    summary = {}
    for name, runs in groups.items():
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in runs)}
        for metric in METRICS:
            mean, std = _mean_std([r["test"].get(metric, math.nan) for r in runs])
            entry[metric] = {"mean": mean, "std": std}
        entry["params"] = runs[0]["params"]
        entry["gflops"] = runs[0]["gflops"]
        entry["seconds_per_epoch"] = _mean_std([r["seconds_per_epoch"] for r in runs])[0]
        summary[name] = entry
    return summary


def paired(study: Study, results: list[dict]) -> list[dict]:
    """Per seed, each configuration minus the baseline it names as ``pair``."""
    by_key = {(r["name"], r["seed"]): r for r in results}
    rows = []
    for run in study.runs:
        if run.pair is None:
            continue
        for seed in run.seeds:
            a, b = by_key.get((run.pair, seed)), by_key.get((run.name, seed))
            if a is None or b is None:
                continue
            rows.append(
                {
                    "baseline": run.pair,
                    "variant": run.name,
                    "seed": seed,
                    **{m: b["test"].get(m, math.nan) - a["test"].get(m, math.nan) for m in METRICS},
                }
            )
    return rows


def paired_summary(pairs: list[dict]) -> dict[str, dict[str, Any]]:
    """Per variant: its baseline, the paired seeds, mean ± std of each difference, how many
    seeds the variant won (difference > 0) and the two-sided paired t-test's p (NaN below two
    pairs or when every difference is equal)."""
    from scipy.stats import ttest_1samp

    groups: dict[str, list[dict]] = defaultdict(list)
    for p in pairs:
        groups[p["variant"]].append(p)
    out = {}
    for variant, rows in groups.items():
        entry: dict[str, Any] = {
            "baseline": rows[0]["baseline"],
            "seeds": [r["seed"] for r in rows],
        }
        for metric in METRICS:
            # A seed missing a metric (NaN) drops out of its mean, spread and test alike.
            differences = [r[metric] for r in rows if not math.isnan(r[metric])]
            mean, std = _mean_std(differences)
            wins = sum(d > 0 for d in differences)
            p = math.nan
            if len(differences) > 1 and std > 0:
                p = float(ttest_1samp(differences, 0.0).pvalue)
            entry[metric] = {"mean": mean, "std": std, "wins": wins, "p": p}
        out[variant] = entry
    return out


def _pct(mean: float, std: float | None = None, signed: bool = False) -> str:
    """A fraction as percent with two decimals (``–`` for NaN), ``± std`` when there is one."""
    if math.isnan(mean):
        return "–"
    spread = std is not None and not math.isnan(std)
    return f"{100 * mean:{'+' if signed else ''}.2f}" + (f" ± {100 * std:.2f}" if spread else "")


def markdown(
    study: Study,
    summary: dict,
    pairs: list[dict],
    paired_by_variant: dict[str, dict[str, Any]],
    results: list[dict],
    figures: list[Path],
    classes: Sequence[str] = (),
    auxiliary: Sequence[dict] = (),
) -> str:
    """``<results>.md``: the main, per-class and paired tables, the auxiliary runs, figure links
    and every command.

    ``figures`` are linked by file name, so they must lie beside the markdown; ``classes`` not
    found in any run's test metrics are left out of the per-class table. Evaluation runs
    (``test_of``) are rows of their own, paired with the run they post-process.
    """
    lines = [
        "# Study results",
        "",
        f"Fit config `{study.config}`; test scales {study.test_scales}, flip {study.test_flip}.",
        "Mean ± std over seeds, percent. s.s. = single scale; m.s. = multi-scale + flip. "
        "s/epoch: the fits' own logged wall time per epoch, validation and data loading "
        "included, on a machine shared with other work (`benchmarks/train_speed.py` times the "
        "configurations against each other).",
        "",
        "| configuration | seeds | mIoU s.s. | mIoU m.s. | BF@1px | BF@3px | BF@1px skip "
        "| BF@3px skip | params (M) | GFLOPs | s/epoch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in summary.items():
        cells = [_pct(e[m]["mean"], e[m]["std"]) for m in METRICS[:6]]
        lines.append(
            f"| {name} | {len(e['seeds'])} | {' | '.join(cells)} | {e['params'] / 1e6:.2f} "
            f"| {e['gflops']:.1f} | {e['seconds_per_epoch']:.0f} |"
        )
    classes = [c for c in classes if any(f"IoU/{c}" in r["test"] for r in results)]
    if classes:
        lines += [
            "",
            "## Per-class IoU (single scale, mean over seeds, percent)",
            "",
            f"| configuration | {' | '.join(classes)} |",
            f"|---|{'---|' * len(classes)}",
        ]
        for name in summary:
            runs = [r["test"] for r in results if r["name"] == name]
            cells = [
                _pct(_mean_std([t.get(f"IoU/{c}", math.nan) for t in runs])[0]) for c in classes
            ]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    if pairs:
        lines += [
            "",
            "## Paired differences (variant − baseline, same seed, points)",
            "",
            "| variant | baseline | seed | ΔmIoU s.s. | ΔmIoU m.s. | ΔBF@1px | ΔBF@3px "
            "| ΔBF@1px skip | ΔBF@3px skip |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in pairs:
            cells = ["–" if math.isnan(p[m]) else f"{100 * p[m]:+.2f}" for m in METRICS[:6]]
            lines.append(
                f"| {p['variant']} | {p['baseline']} | {p['seed']} | {' | '.join(cells)} |"
            )
        lines += [
            "",
            "Mean ± std over the paired seeds; in brackets the seeds where the variant is "
            "higher, and p of a two-sided paired t-test (with two or three pairs only a large, "
            "steady difference reaches a small p):",
            "",
            "| variant | baseline | pairs | ΔmIoU s.s. | ΔmIoU m.s. | ΔBF@1px | ΔBF@3px "
            "| ΔBF@1px skip | ΔBF@3px skip |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, e in paired_by_variant.items():
            n = len(e["seeds"])
            cells = [
                f"{_pct(e[m]['mean'], e[m]['std'], signed=True)} ({e[m]['wins']}/{n}"
                + ("" if math.isnan(e[m]["p"]) else f", p {e[m]['p']:.2g}")
                + ")"
                if not math.isnan(e[m]["mean"])
                else "–"
                for m in METRICS[:6]
            ]
            lines.append(f"| {variant} | {e['baseline']} | {n} | {' | '.join(cells)} |")
    if auxiliary:
        lines += [
            "",
            "## Auxiliary runs (what other runs read; not compared)",
            "",
            "| run | seed | test metrics |",
            "|---|---|---|",
        ]
        for r in auxiliary:
            test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(r.get("test", {}).items()))
            lines.append(f"| {r['name']} | {r['seed']} | {test or '–'} |")
    lines += ["", "## Figures", "", *[f"![{f.name}]({f.name})" for f in figures]]
    lines += ["", "## Commands", ""]
    for r in [*results, *auxiliary]:
        commands = [r[k] for k in ("fit_command", "test_command", "command") if k in r]
        if "test_of" in r:  # its fit is the tested run's, listed with it
            commands = [r["test_command"]]
        lines += [f"- {r['name']} seed {r['seed']}:", *[f"  `{c}`" for c in commands]]
    return "\n".join(lines) + "\n"


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


def plots(study: Study, summary: dict, results: list[dict]) -> dict[Path, Figure]:
    """The report's own figures, keyed by the file each is saved to beside ``study.results``."""
    return {
        Path(f"{study.results}_curves.png"): curves_figure(summary, results),
        Path(f"{study.results}_bars.png"): bars_figure(summary),
    }


def payload(
    study: Study,
    summary: dict,
    pairs: list[dict],
    paired_by_variant: dict[str, dict[str, Any]],
    results: list[dict],
) -> dict[str, Any]:
    """The ``<results>.json`` content: the tables' numbers and every run but its history."""
    return {
        "study": {
            "config": study.config,
            "test_scales": study.test_scales,
            "flip": study.test_flip,
        },
        "summary": summary,
        "paired": pairs,
        "paired_summary": paired_by_variant,
        "runs": [{k: v for k, v in r.items() if k != "history"} for r in results],
    }


@dataclass
class Report:
    """A drawn report, not yet on disk: what :func:`save_report` writes, file by file."""

    markdown_path: Path
    markdown_text: str
    json_path: Path
    json_text: str
    figures: dict[Path, Figure]


def build_report(
    study: Study,
    results: list[dict],
    classes: Sequence[str] = (),
    figures: Sequence[Path] = (),
) -> Report:
    """The report of the finished ``results``: tables, JSON and plots.

    Args:
        classes: class names, in label order, for the per-class IoU table.
        figures: figures made elsewhere (the runner's qualitative comparisons, which need the
            models), linked in the markdown after the report's own plots.
    """
    compared = scored(results)
    auxiliary = [r for r in results if r not in compared]
    summary = summarise(compared)
    pairs = paired(study, compared)
    paired_by_variant = paired_summary(pairs)
    drawn = plots(study, summary, compared)
    figures = [*drawn, *figures]
    text = markdown(study, summary, pairs, paired_by_variant, compared, figures, classes, auxiliary)
    data = payload(study, summary, pairs, paired_by_variant, results)
    base = Path(study.results)
    return Report(
        markdown_path=base.with_name(base.name + ".md"),
        markdown_text=text,
        json_path=base.with_name(base.name + ".json"),
        json_text=json.dumps(data, indent=2, allow_nan=True) + "\n",
        figures=drawn,
    )


def save_report(report: Report, dpi: int = 100) -> None:
    """Write the figures, then the markdown, then the JSON, each atomically: a runner killed
    mid-report leaves every file whole, the previous report's or the new one's."""
    for path, fig in report.figures.items():
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi)
    for path, text in (
        (report.markdown_path, report.markdown_text),
        (report.json_path, report.json_text),
    ):
        with atomic_write(path) as tmp:
            tmp.write_text(text)
