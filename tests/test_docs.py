"""docs/camvid_study.md and the README quote the generated study report; these catch a stale copy."""

import json
import re
from pathlib import Path

from sdnseg.engine.study import Study, schedule

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "camvid_study.md").read_text()
REPORT = (ROOT / "benchmarks" / "results" / "camvid_study.md").read_text()
RESULTS = json.loads((ROOT / "benchmarks" / "results" / "camvid_study.json").read_text())


def _tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every table in a markdown text, as rows keyed by header; minus signs and dashes unified."""
    tables, lines = [], [*markdown.splitlines(), ""]
    block: list[str] = []
    for line in lines:
        if line.startswith("|"):
            block.append(line.replace("−", "-").replace("–", "-"))
            continue
        if len(block) > 2:
            header, *rows = ([c.strip(" *") for c in r.strip("|").split("|")] for r in block)
            tables.append([dict(zip(header, row, strict=True)) for row in rows[1:]])
        block = []
    return tables


def _table_with(markdown: str, *columns: str) -> list[list[dict[str, str]]]:
    return [t for t in _tables(markdown) if all(c in t[0] for c in columns)]


def test_every_doc_table_by_configuration_copies_the_report():
    (main,) = _table_with(REPORT, "configuration", "mIoU s.s.")
    (summary,) = _table_with(REPORT, "variant", "pairs")
    runs = {row["configuration"]: row for row in main}
    paired = {row["variant"]: row for row in summary}
    quoting = set(main[0]) - {"configuration"}  # the train-speed table shares only the name
    doc_tables = [
        t
        for t in _table_with(DOC, "configuration")
        if any(c in quoting or c.startswith("Δ") for c in t[0])
    ]
    quoted = set()
    for table in doc_tables:
        for row in table:
            name = row["configuration"]
            assert name in runs, f"{name} is not in the report"
            quoted.add(name)
            for column, cell in row.items():
                if column in runs[name]:
                    assert cell == runs[name][column], (name, column)
                elif column.startswith("Δ"):
                    assert cell == (paired[name][column] if name in paired else "-"), (name, column)
    assert quoted == set(runs), "a finished configuration is missing from the doc"


def test_the_doc_per_class_table_copies_the_report():
    (doc,) = _table_with(DOC, "configuration", "Sky")
    (report,) = _table_with(REPORT, "configuration", "Sky")
    assert doc == report


def test_every_doc_paired_table_copies_one_variant_of_the_report():
    (per_seed,) = _table_with(REPORT, "variant", "seed")
    (summary,) = _table_with(REPORT, "variant", "pairs")
    doc_tables = _table_with(DOC, "seed", "ΔmIoU s.s.")
    assert doc_tables, "no paired table in docs/camvid_study.md"
    quoted = set()
    for table in doc_tables:
        columns = [c for c in table[0] if c.startswith("Δ")]
        seeds = {row["seed"]: row for row in table if row["seed"].isdigit()}
        mean = next(row for row in table if row["seed"] == "mean ± std")
        wins = next(row for row in table if row["seed"] == "wins, p")
        matches = [
            entry["variant"]
            for entry in summary
            if all(entry[c] == f"{mean[c]} ({wins[c]})" for c in columns)
            and {
                r["seed"]: [r[c] for c in columns]
                for r in per_seed
                if r["variant"] == entry["variant"]
            }
            == {s: [row[c] for c in columns] for s, row in seeds.items()}
        ]
        assert len(matches) == 1, f"paired table with seeds {sorted(seeds)} matches {matches}"
        quoted.add(matches[0])
    quoted |= {
        row["configuration"] for t in _table_with(DOC, "configuration", "ΔmIoU s.s.") for row in t
    }
    assert {entry["variant"] for entry in summary} <= quoted, "a paired variant is missing"


def test_the_run_count_in_doc_and_readme_is_the_report_s():
    total = len(schedule(Study.load(ROOT / "configs" / "studies" / "camvid.yaml")))
    finished = len(RESULTS["runs"])
    readme = (ROOT / "README.md").read_text()
    if finished < total:
        assert f"in progress ({finished} of {total} runs)" in DOC.splitlines()[0]
        assert re.search(rf"{finished}\s+of\s+{total}\s+runs", readme)
    else:
        assert "in progress" not in DOC.splitlines()[0]
