"""A hand-written study document that quotes its generated report, kept in step with it.

The document marks each quoted part of the report with the heading it copies::

    <!-- report: Boundary IoU and trimap mIoU (single scale, percent) -->
    (replaced by that section of the report: everything under the heading up to the next one)
    <!-- /report -->

``<!-- report: main -->`` quotes what comes before the report's first ``##`` heading, its title
left out. :func:`fill` copies the sections in, so the prose around them stays the author's while
every table and figure link is the report's (``sdnseg study`` refreshes the study's ``doc``;
``tests/test_docs.py`` fails on a stale copy).
"""

from __future__ import annotations

import re
from pathlib import Path

from sdnseg.io import atomic_write

OPEN, CLOSE = "<!-- report: ", "<!-- /report -->"
# A block's body never runs past another opening marker: an unclosed block is an error, not a
# silent merge with the next one.
BLOCK = re.compile(
    r"(<!-- report: (?P<heading>[^\n]+?) -->\n)(?P<body>(?:(?!<!-- report: ).)*?)"
    r"(<!-- /report -->)",
    re.S,
)
MISSING = "_(not in the report yet)_\n"


def sections(report: str) -> dict[str, str]:
    """The report's sections by heading (``main`` for the part before the first ``##``)."""
    out: dict[str, list[str]] = {"main": []}
    current = "main"
    for line in report.splitlines():
        if line.startswith("## "):
            current = line.removeprefix("## ").strip()
            out[current] = []
        elif not (current == "main" and line.startswith("# ")):
            out[current].append(line)
    return {heading: "\n".join(lines).strip() + "\n" for heading, lines in out.items()}


def fill(doc: str, report: str, doc_name: str = "the document", strict: bool = True) -> str:
    """``doc`` with every quoted block replaced by the report's section of that heading.

    Args:
        strict: raise for a heading the report does not have; otherwise quote a placeholder
            (what the runner does, so that a document written before the results does not stop
            a study after its first run).

    Raises:
        ValueError: markers that do not pair up (line starts ``<!-- report: `` against
            ``<!-- /report -->``), or, when ``strict``, a heading the report does not have.
    """
    parts = sections(report)
    lines = doc.splitlines()
    opened = sum(line.startswith(OPEN) for line in lines)
    closed = sum(line.strip() == CLOSE for line in lines)
    if not opened == closed == len(BLOCK.findall(doc)):
        raise ValueError(
            f"{doc_name}: {opened} '{OPEN}...' markers and {closed} '{CLOSE}' markers do not pair "
            "up (each quoted block opens on its own line and closes before the next opens)"
        )

    def replace(match: re.Match) -> str:
        heading = match["heading"].strip()
        if heading not in parts and strict:
            raise ValueError(
                f"{doc_name} quotes report section {heading!r}, which the report does not have "
                f"(it has: {sorted(parts)})"
            )
        return f"{match[1]}{parts.get(heading, MISSING)}{match[4]}"

    return BLOCK.sub(replace, doc)


def refresh_doc(doc: Path, report: str, strict: bool = True) -> None:
    """Rewrite ``doc``'s quoted blocks from ``report`` (atomically; untouched if unchanged)."""
    text = doc.read_text()
    filled = fill(text, report, str(doc), strict)
    if filled != text:
        with atomic_write(doc) as tmp:
            tmp.write_text(filled)
