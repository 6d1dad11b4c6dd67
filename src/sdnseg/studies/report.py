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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdnseg.io import atomic_write
from sdnseg.studies.claims import check_claims, claims_markdown
from sdnseg.studies.report_figures import plots
from sdnseg.studies.spec import Study
from sdnseg.studies.summary import (
    BOUNDARY_METRICS,
    METRICS,
    mean_std,
    paired,
    paired_summary,
    per_class_paired,
    scored,
    summarise,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pct(mean: float, std: float | None = None, signed: bool = False) -> str:
    """A fraction as percent with two decimals (``–`` for NaN), ``± std`` when there is one."""
    if math.isnan(mean):
        return "–"
    spread = std is not None and not math.isnan(std)
    return f"{100 * mean:{'+' if signed else ''}.2f}" + (f" ± {100 * std:.2f}" if spread else "")


def _paired_cell(stats: dict[str, Any], with_p: bool = True) -> str:
    """``mean ± std (wins/n, p …)`` of one paired difference, ``–`` where it has no mean; n
    counts the seeds that have the metric, which can be fewer than the pairs."""
    if math.isnan(stats["mean"]):
        return "–"
    p = "" if not with_p or math.isnan(stats["p"]) else f", p {stats['p']:.2g}"
    return f"{_pct(stats['mean'], stats['std'], signed=True)} ({stats['wins']}/{stats['n']}{p})"


def _boundary_lines(summary: dict, paired_by_variant: dict) -> list[str]:
    """Boundary IoU and the trimap mIoU per band width: per configuration, then paired."""
    metrics = [m for m in BOUNDARY_METRICS if any(m in e for e in summary.values())]
    if not metrics:
        return []
    heads = [m.replace("trimap_mIoU@", "trimap ") for m in metrics]
    lines = [
        "",
        "## Boundary IoU and trimap mIoU (single scale, percent)",
        "",
        "Boundary IoU: mean over classes, band 2% of the image diagonal. Trimap: mIoU inside a "
        "band of the given width around the true boundaries.",
        "",
        f"| configuration | seeds | {' | '.join(heads)} |",
        f"|---|---|{'---|' * len(metrics)}",
    ]
    # summarise and paired give every entry each metric some run has: no entry lacks one.
    for name, e in summary.items():
        cells = [_pct(e[m]["mean"], e[m]["std"]) for m in metrics]
        lines.append(f"| {name} | {len(e['seeds'])} | {' | '.join(cells)} |")
    if paired_by_variant:
        lines += [
            "",
            "Paired (variant − baseline, points; seeds higher in brackets):",
            "",
            f"| variant | baseline | pairs | {' | '.join('Δ' + h for h in heads)} |",
            f"|---|---|---|{'---|' * len(metrics)}",
        ]
        for variant, e in paired_by_variant.items():
            cells = [_paired_cell(e[m], with_p=False) for m in metrics]
            lines.append(
                f"| {variant} | {e['baseline']} | {len(e['seeds'])} | {' | '.join(cells)} |"
            )
    return lines


def _per_class_paired_lines(deltas: dict, classes: Sequence[str]) -> list[str]:
    if not deltas:
        return []
    classes = [c for c in classes if any(c in d for d in deltas.values())]
    lines = [
        "",
        "## Which classes move (IoU, variant − baseline, points, mean over paired seeds; "
        "seeds higher in brackets)",
        "",
        f"| variant | n | {' | '.join(classes)} |",
        f"|---|---|{'---|' * len(classes)}",
    ]
    for variant, by_class in deltas.items():
        n = max(e["n"] for e in by_class.values())
        cells = [
            f"{100 * by_class[c]['mean']:+.2f} ({by_class[c]['wins']})" if c in by_class else "–"
            for c in classes
        ]
        lines.append(f"| {variant} | {n} | {' | '.join(cells)} |")
    return lines


def markdown(
    study: Study,
    summary: dict,
    pairs: list[dict],
    paired_by_variant: dict[str, dict[str, Any]],
    results: list[dict],
    figures: list[Path],
    classes: Sequence[str] = (),
    auxiliary: Sequence[dict] = (),
    checked_claims: Sequence[dict] = (),
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
                _pct(mean_std([t.get(f"IoU/{c}", math.nan) for t in runs])[0]) for c in classes
            ]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += _boundary_lines(summary, paired_by_variant)
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
            cells = [_paired_cell(e[m]) for m in METRICS[:6]]
            lines.append(
                f"| {variant} | {e['baseline']} | {len(e['seeds'])} | {' | '.join(cells)} |"
            )
    lines += _per_class_paired_lines(per_class_paired(study, results, classes), classes)
    lines += claims_markdown(list(checked_claims))
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


def payload(
    study: Study,
    summary: dict,
    pairs: list[dict],
    paired_by_variant: dict[str, dict[str, Any]],
    results: list[dict],
    checked_claims: Sequence[dict] = (),
) -> dict[str, Any]:
    """The ``<results>.json`` content: the tables' numbers and every run but its history (and
    the claims' verdicts, for a study that states claims)."""
    data = {
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
    if checked_claims:
        data["claims"] = list(checked_claims)
    return data


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
    checked = check_claims(study, compared)
    drawn = plots(study, summary, compared, paired_by_variant)
    figures = [*drawn, *figures]
    text = markdown(
        study, summary, pairs, paired_by_variant, compared, figures, classes, auxiliary, checked
    )
    data = payload(study, summary, pairs, paired_by_variant, results, checked)
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
