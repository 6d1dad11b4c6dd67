"""Statistics of a study's finished results: mean ± std over seeds and paired differences.

Values are fractions. Pure functions of the ``result.json`` records (see
:mod:`sdnseg.studies.report`, which tabulates them).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sdnseg.studies.spec import Study

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
# The test's metric suite (Boundary IoU, trimap mIoU): in the tables only where a run has them.
BOUNDARY_METRICS = tuple(["mBIoU", *(f"trimap_mIoU@{w}px" for w in (1, 2, 4, 8, 16, 32))])


def metrics_of(results: list[dict]) -> tuple[str, ...]:
    """:data:`METRICS`, then those of :data:`BOUNDARY_METRICS` that some result has."""
    found = {m for r in results for m in r.get("test", {})}
    return METRICS + tuple(m for m in BOUNDARY_METRICS if m in found)


def scored(results: list[dict]) -> list[dict]:
    """The results with segmentation metrics (fits and evaluation runs), which the tables
    compare; the others (a SegFix network, a command's output) are listed apart."""
    return [r for r in results if "mIoU" in r.get("test", {})]


def mean_std(values: list[float]) -> tuple[float, float]:
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
    metrics = metrics_of(results)
    for name, runs in groups.items():
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in runs)}
        for metric in metrics:
            mean, std = mean_std([r["test"].get(metric, math.nan) for r in runs])
            entry[metric] = {"mean": mean, "std": std}
        entry["params"] = runs[0]["params"]
        entry["gflops"] = runs[0]["gflops"]
        entry["seconds_per_epoch"] = mean_std([r["seconds_per_epoch"] for r in runs])[0]
        summary[name] = entry
    return summary


def paired(study: Study, results: list[dict]) -> list[dict]:
    """Per seed, each configuration minus the baseline it names as ``pair``."""
    by_key = {(r["name"], r["seed"]): r for r in results}
    metrics = metrics_of(results)
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
                    **{m: b["test"].get(m, math.nan) - a["test"].get(m, math.nan) for m in metrics},
                }
            )
    return rows


def paired_test(differences: list[float]) -> tuple[float, float, float]:
    """Mean, sample std and the two-sided paired t-test's p of per-seed differences (NaN where
    undefined: std below two values, p also when every difference is equal); NaNs dropped."""
    from scipy.stats import ttest_1samp

    mean, std = mean_std(differences)
    p = math.nan
    if not math.isnan(std) and std > 0:
        p = float(ttest_1samp([d for d in differences if not math.isnan(d)], 0.0).pvalue)
    return mean, std, p


def paired_summary(pairs: list[dict]) -> dict[str, dict[str, Any]]:
    """Per variant: its baseline, the paired seeds, and per metric mean ± std of the
    difference, how many seeds the variant won (difference > 0) out of the ``n`` seeds that have
    the metric, and the two-sided paired t-test's p (NaN below two pairs or when every
    difference is equal)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for p in pairs:
        groups[p["variant"]].append(p)
    out = {}
    for variant, rows in groups.items():
        entry: dict[str, Any] = {
            "baseline": rows[0]["baseline"],
            "seeds": [r["seed"] for r in rows],
        }
        for metric in [k for k in rows[0] if k not in ("baseline", "variant", "seed")]:
            # A seed missing a metric (NaN) drops out of its mean, spread and test alike.
            differences = [r[metric] for r in rows if not math.isnan(r[metric])]
            mean, std, p = paired_test(differences)
            wins = sum(d > 0 for d in differences)
            entry[metric] = {"mean": mean, "std": std, "wins": wins, "n": len(differences), "p": p}
        out[variant] = entry
    return out


def per_class_paired(
    study: Study, results: list[dict], classes: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per variant and class: mean IoU difference to the baseline over paired seeds, and how
    many seeds it rose (which classes move)."""
    by_key = {(r["name"], r["seed"]): r["test"] for r in results}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for run in study.runs:
        if run.pair is None:
            continue
        for c in classes:
            key = f"IoU/{c}"
            deltas = [
                by_key[(run.name, s)][key] - by_key[(run.pair, s)][key]
                for s in run.seeds
                if key in by_key.get((run.name, s), {}) and key in by_key.get((run.pair, s), {})
            ]
            if deltas:
                entry = {"mean": statistics.fmean(deltas), "wins": sum(d > 0 for d in deltas)}
                out.setdefault(run.name, {})[c] = {**entry, "n": len(deltas)}
    return out
