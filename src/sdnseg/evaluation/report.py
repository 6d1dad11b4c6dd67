"""A self-contained HTML report of an evaluation: one file, images inlined, no script.

Sections: the headline table, the per-class table, the trimap IoU curve, the normalised confusion
matrix, and the images with the largest boundary error as error maps (the paper's Figure 1
style: wrong pixels in the colour of the predicted class, right and unlabelled ones black).
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sdnseg.metrics import SuiteResult

__all__ = ["ReportImage", "html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass
class ReportImage:
    """One image of the "largest boundary error" section: a caption and a PNG panel."""

    caption: str
    png: bytes


def _percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_report(
    result: SuiteResult,
    title: str,
    figures: dict[str, bytes] | None = None,
    worst: Sequence[ReportImage] = (),
    notes: Sequence[str] = (),
) -> str:
    """The report as one HTML string.

    Args:
        result: the scores (:meth:`sdnseg.metrics.MetricSuite.compute`).
        title: page title, e.g. the prediction folder.
        figures: section title -> PNG bytes (e.g. ``"trimap IoU"``, ``"confusion matrix"``).
        worst: the images with the largest boundary error, worst first.
        notes: lines shown under the title (data, conventions, skipped files).
    """
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(note)}</p>' for note in notes),
        "<h2>Scores</h2>",
        _table(
            ["metric", "value (%)"],
            [[name, _percent(value)] for name, value in result.headline.items()],
        ),
        "<h2>Per class</h2>",
    ]
    columns = list(next(iter(result.per_class.values()), {}))
    parts.append(
        _table(
            ["class", *columns],
            [
                [name, *(_percent(row[c]) for c in columns)]
                for name, row in result.per_class.items()
            ],
        )
    )
    for name, png in (figures or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", _img(png, name)]
    if worst:
        parts.append("<h2>Largest boundary error</h2>")
        parts.append(
            '<p class="note">Each row: image (when given), ground truth, prediction, error map '
            "(wrong pixels in the colour of the predicted class; right and unlabelled ones "
            "black).</p>"
        )
        for item in worst:
            parts += [f"<h3>{html.escape(item.caption)}</h3>", _img(item.png, item.caption)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
