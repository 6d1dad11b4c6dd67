"""The report of ``sdnseg study``: tables (mean ± std over seeds), paired differences, plots.

Values are fractions in the JSON and percent (differences in points) in the markdown.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdnseg.data import SegmentationDataModule
from sdnseg.engine.study import (
    Study,
    latest_checkpoint,
    run_dir,
    study_datamodule,
    write_text_atomic,
)
from sdnseg.viz import save_figure

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
) -> str:
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
    lines += ["", "## Figures", "", *[f"![{f.name}]({f.name})" for f in figures]]
    lines += ["", "## Commands", ""]
    for r in results:
        lines += [
            f"- {r['name']} seed {r['seed']}:",
            f"  `{r['fit_command']}`",
            f"  `{r['test_command']}`",
        ]
    return "\n".join(lines) + "\n"


def plots(study: Study, summary: dict, results: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("mIoU", "BF@1px"), strict=True):
        for name in summary:
            by_epoch: dict[float, list[float]] = defaultdict(list)
            for result in results:
                if result["name"] == name:
                    for row in result["history"]:
                        if f"val/{metric}" in row:
                            by_epoch[row.get("epoch", 0)].append(row[f"val/{metric}"])
            if by_epoch:
                epochs = sorted(by_epoch)
                means = [100 * statistics.fmean(by_epoch[e]) for e in epochs]
                ax.plot(epochs, means, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {metric} (%), mean over seeds")
    # Beside the plots: with the ablations there are too many lines to leave a free corner.
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    written.append(save_figure(fig, Path(f"{study.results}_curves.png")))

    names = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(4 * 3, 0.45 * len(names) + 2))
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
    written.append(save_figure(fig, Path(f"{study.results}_bars.png")))
    return written


def qualitative(study: Study, results: list[dict], dm: SegmentationDataModule) -> list[Path]:
    """Per variant in ``study.qualitative``: image, ground truth, baseline and variant with their
    error maps, on fixed test images (chosen in the study file, not by outcome), single scale."""
    from sdnseg.inference import load_model
    from sdnseg.viz.segmentation import comparison_figure

    spec = study.qualitative
    if not spec.get("variants"):
        return []
    seed = int(spec.get("seed", 0))
    finished = {(r["name"], r["seed"]) for r in results}
    specs = {run.name: run for run in study.runs}
    dataset = dm.raw_dataset(dm.test_split)
    indices = [i for i in spec.get("images", [0]) if 0 <= i < len(dataset)]
    items = [dataset[i] for i in indices]
    images = [item["image"].permute(1, 2, 0).numpy() for item in items]
    targets = [item["mask"].numpy() for item in items]
    written = []
    for variant in spec["variants"]:
        names = (specs[variant].pair, variant)
        if any((name, seed) not in finished for name in names):
            continue
        predictions = {}
        for name in names:
            model = load_model(latest_checkpoint(run_dir(study, specs[name], seed)))
            predictions[f"{name} (seed {seed})"] = [
                model.predict(image).numpy() for image in images
            ]
        path = Path(f"{study.results}_qualitative_{variant}.png")
        written.append(
            comparison_figure(path, images, targets, predictions, dm.palette, dm.ignore_index)
        )
    return written


def write_report(study: Study, results: list[dict]) -> None:
    """``<results>.json``, ``<results>.md`` and the plots, from the finished runs."""
    if not results:
        return
    summary = summarise(results)
    pairs = paired(study, results)
    paired_by_variant = paired_summary(pairs)
    dm = study_datamodule(study)
    payload = {
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
    base = Path(study.results)
    base.parent.mkdir(parents=True, exist_ok=True)
    figures = plots(study, summary, results) + qualitative(study, results, dm)
    text = markdown(study, summary, pairs, paired_by_variant, results, figures, dm.classes)
    write_text_atomic(base.with_name(base.name + ".md"), text)
    payload_text = json.dumps(payload, indent=2, allow_nan=True) + "\n"
    write_text_atomic(base.with_name(base.name + ".json"), payload_text)
