"""A study document's quoted report sections: copied in whole, stale or unknown ones caught."""

import pytest

from sdnseg.studies.doc_blocks import fill, refresh_doc, sections

REPORT = """# Study results

Intro line.

| configuration | mIoU |
|---|---|
| base | 50.00 |

## Paired differences

| variant | ΔmIoU |
|---|---|
| sdn | +1.00 |

## Commands

- base seed 0
"""


def test_sections_split_at_level_two_headings_and_leave_the_title_out():
    parts = sections(REPORT)
    assert list(parts) == ["main", "Paired differences", "Commands"]
    assert parts["main"].startswith("Intro line.") and "# Study results" not in parts["main"]
    assert parts["Paired differences"] == "| variant | ΔmIoU |\n|---|---|\n| sdn | +1.00 |\n"


def test_fill_replaces_only_the_quoted_blocks_and_keeps_the_prose():
    doc = (
        "# My study\n\nProse about `<!-- report: x -->` markers.\n\n"
        "<!-- report: Paired differences -->\nstale table\n<!-- /report -->\n\nMore prose.\n"
    )
    filled = fill(doc, REPORT)
    assert filled == (
        "# My study\n\nProse about `<!-- report: x -->` markers.\n\n"
        "<!-- report: Paired differences -->\n| variant | ΔmIoU |\n|---|---|\n| sdn | +1.00 |\n"
        "<!-- /report -->\n\nMore prose.\n"
    )
    assert fill(filled, REPORT) == filled  # idempotent


def test_a_block_naming_a_missing_section_says_which(tmp_path):
    doc = tmp_path / "study.md"
    doc.write_text("<!-- report: Trimap -->\n<!-- /report -->\n")
    with pytest.raises(ValueError, match=r"study\.md quotes report section 'Trimap'"):
        refresh_doc(doc, REPORT)
    assert doc.read_text() == "<!-- report: Trimap -->\n<!-- /report -->\n"  # left whole
    doc.write_text("<!-- report: main -->\n<!-- /report -->\n")
    refresh_doc(doc, REPORT)
    assert "| base | 50.00 |" in doc.read_text()


def test_an_unclosed_block_is_an_error_not_a_merge_with_the_next():
    doc = "<!-- report: main -->\nPROSE\n<!-- report: Commands -->\nold\n<!-- /report -->\n"
    with pytest.raises(ValueError, match="do not pair up"):
        fill(doc, REPORT)


def test_outside_strict_mode_a_section_not_yet_in_the_report_gets_a_placeholder():
    doc = "<!-- report: Trimap -->\nold\n<!-- /report -->\n"
    filled = fill(doc, REPORT, strict=False)
    assert filled == "<!-- report: Trimap -->\n_(not in the report yet)_\n<!-- /report -->\n"
    with pytest.raises(ValueError, match="'Trimap'"):
        fill(filled, REPORT)
