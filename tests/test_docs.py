"""docs/camvid_study_scratch.md (the from-scratch study) and the README quote the generated study report; these catch a stale copy."""

import json
import re
from itertools import pairwise
from pathlib import Path

from sdnseg.studies.spec import Study, schedule

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "camvid_study_scratch.md").read_text()
REPORT = (ROOT / "benchmarks" / "results" / "camvid_study.md").read_text()
RESULTS = json.loads((ROOT / "benchmarks" / "results" / "camvid_study.json").read_text())
STUDY = Study.load(ROOT / "configs" / "studies" / "camvid.yaml")


def _tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every table in a markdown text, as rows keyed by header; minus signs and dashes unified."""
    tables, block = [], []
    for line in [*markdown.splitlines(), ""]:
        line = line.strip()
        if line.startswith("|"):
            block.append(line.replace("−", "-").replace("–", "-"))
            continue
        if block:
            header, separator, *rows = (
                [
                    c.strip(" *").replace("\\|", "|")
                    for c in re.split(r"(?<!\\)\|", r.removeprefix("|").removesuffix("|"))
                ]
                for r in block
            )
            assert all(c and set(c) <= set("-:") for c in separator), f"not a table: {block[:2]}"
            tables.append([dict(zip(header, row, strict=True)) for row in rows])
        block = []
    return tables


def _table_with(markdown: str, *columns: str) -> list[list[dict[str, str]]]:
    return [t for t in _tables(markdown) if t and all(c in t[0] for c in columns)]


(REPORT_MAIN,) = _table_with(REPORT, "configuration", "mIoU s.s.")
(REPORT_PER_SEED,) = _table_with(REPORT, "variant", "seed")
(REPORT_PAIRED,) = _table_with(REPORT, "variant", "pairs")
# Doc-only columns beside quoted ones; the train-speed table quotes another benchmark.
LABELS = {"in the SDN slot", "SDC kernel", "paper F", "s/step"}
SPEED = {"configuration", "s/step", "× baseline"}


def test_every_doc_table_by_configuration_copies_the_report():
    runs = {row["configuration"]: row for row in REPORT_MAIN}
    paired = {row["variant"]: row for row in REPORT_PAIRED}
    known = set(REPORT_MAIN[0]) | set(REPORT_PAIRED[0]) | LABELS
    quoted = set()
    for table in _table_with(DOC, "configuration"):
        columns = set(table[0])
        if "Sky" in columns or columns <= SPEED:
            continue  # the per-class table is checked below
        assert columns <= known, f"doc column(s) {columns - known} are not in the report"
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
    doc = [row for table in _table_with(DOC, "configuration", "Sky") for row in table]
    assert doc == _table_with(REPORT, "configuration", "Sky")[0]


def test_every_doc_paired_table_copies_one_variant_of_the_report():
    doc_tables = _table_with(DOC, "seed", "ΔmIoU s.s.")
    quoted = set()
    for table in doc_tables:
        columns = [c for c in table[0] if c.startswith("Δ")]
        assert set(columns) <= set(REPORT_PAIRED[0]), f"{columns} not all in the report"
        seeds = {row["seed"]: row for row in table if row["seed"].isdigit()}
        mean = next((row for row in table if row["seed"] == "mean ± std"), None)
        wins = next((row for row in table if row["seed"] == "wins, p"), None)
        assert mean and wins, f"paired table with seeds {sorted(seeds)} lacks its summary rows"
        matches = [
            entry["variant"]
            for entry in REPORT_PAIRED
            if all(entry[c] == f"{mean[c]} ({wins[c]})" for c in columns)
            and {
                r["seed"]: [r[c] for c in columns]
                for r in REPORT_PER_SEED
                if r["variant"] == entry["variant"]
            }
            == {s: [row[c] for c in columns] for s, row in seeds.items()}
        ]
        assert len(matches) == 1, f"paired table with seeds {sorted(seeds)} matches {matches}"
        quoted.add(matches[0])
    # The main pairs (a variant listed right after its baseline) each get a per-seed table.
    main_pairs = {b.name for a, b in pairwise(STUDY.runs) if b.pair == a.name}
    assert main_pairs & {row["variant"] for row in REPORT_PAIRED} <= quoted


def test_the_run_count_in_doc_and_readme_is_the_report_s():
    total = len(schedule(STUDY))
    finished = len(RESULTS["runs"])
    readme = (ROOT / "README.md").read_text()
    if finished < total:
        assert f"in progress ({finished} of {total} runs)" in DOC.splitlines()[0]
        assert re.search(rf"{finished}\s+of\s+{total}\s+runs", readme)
    else:
        assert "in progress" not in DOC.splitlines()[0]
        assert "in progress" not in readme and not re.search(r"\d+\s+of\s+\d+\s+runs", readme)


def test_the_pretrained_study_doc_quotes_its_current_report_and_counts_its_runs():
    from sdnseg.studies.doc_blocks import fill

    study = Study.load(ROOT / "configs" / "studies" / "camvid_pretrained.yaml")
    doc = (ROOT / study.doc).read_text()
    report = (ROOT / f"{study.results}.md").read_text()
    assert sum(line.startswith("<!-- report: ") for line in doc.splitlines()) >= 4
    assert fill(doc, report) == doc, (
        "docs/camvid_study.md is stale: run "
        "sdnseg study configs/studies/camvid_pretrained.yaml --report_only"
    )
    finished = len(json.loads((ROOT / f"{study.results}.json").read_text())["runs"])
    total = len(schedule(study))
    status = f"{finished} of {total} scheduled items done" if finished < total else "complete"
    (status_line,) = [line for line in doc.splitlines() if line.startswith("**Status")]
    assert status in status_line
    readme = (ROOT / "README.md").read_text()
    if finished < total:
        assert re.search(rf"under way: {finished}\s+of\s+{total}\s+scheduled items", readme)
