"""The study report: pure tables and figures from results, and the committed CamVid report."""

import ast
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdnseg.studies.report import build_report
from sdnseg.studies.spec import Study
from sdnseg.studies.summary import METRICS, paired_summary

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "sdnseg"


def test_paired_summary_mean_std_and_wins():
    rows = [
        {"variant": "sdn", "baseline": "base", "seed": s, **dict.fromkeys(METRICS, d)}
        for s, d in ((0, 0.01), (1, -0.03))
    ]
    (entry,) = paired_summary(rows).values()
    assert entry["baseline"] == "base" and entry["seeds"] == [0, 1]
    assert entry["mIoU"]["mean"] == pytest.approx(-0.01)
    assert entry["mIoU"]["std"] == pytest.approx(0.04 / 2**0.5)  # sample std of (+0.01, -0.03)
    assert entry["mIoU"]["wins"] == 1
    # t = mean / (std / sqrt(2)) = -0.5 with 1 degree of freedom: p = 1 - 2 atan(0.5) / pi.
    assert entry["mIoU"]["p"] == pytest.approx(1 - 2 * math.atan(0.5) / math.pi)
    (single,) = paired_summary(rows[:1]).values()
    assert math.isnan(single["mIoU"]["p"])
    # A metric one seed lacks: that seed leaves the mean, the spread and the test.
    rows.append({"variant": "sdn", "baseline": "base", "seed": 2, **dict.fromkeys(METRICS, 0.05)})
    rows[1]["BF@1px"] = math.nan
    (entry,) = paired_summary(rows).values()
    assert entry["BF@1px"]["mean"] == pytest.approx(0.03) and entry["BF@1px"]["wins"] == 2
    # ... and out of the count the report prints as wins/n, while mIoU keeps all three seeds.
    assert entry["BF@1px"]["n"] == 2 and entry["mIoU"]["n"] == 3
    assert entry["BF@1px"]["p"] == pytest.approx(
        1 - 2 * math.atan(1.5) / math.pi
    )  # t = 0.03 / (0.04 / 2)


@pytest.mark.filterwarnings("ignore:No artists with labels found")
def test_report_redraws_the_committed_camvid_study_from_its_json():
    # The JSON keeps every run but its validation history, which only the curves plot reads.
    from sdnseg.data import CamVid

    study = Study.load(ROOT / "configs" / "studies" / "camvid.yaml")
    results_json = ROOT / "benchmarks" / "results" / "camvid_study.json"
    runs = [{**r, "history": []} for r in json.loads(results_json.read_text())["runs"]]
    variants = study.qualitative["variants"]
    qualitative = [Path(f"{study.results}_qualitative_{v}.png") for v in variants]
    report = build_report(study, runs, CamVid.CLASSES, qualitative)
    assert report.markdown_path == study.results.with_name("camvid_study.md")
    assert report.markdown_text == (ROOT / report.markdown_path).read_text()
    assert report.json_text == results_json.read_text()
    assert [p.name for p in report.figures] == ["camvid_study_curves.png", "camvid_study_bars.png"]


def test_report_draws_and_saves_without_the_runner_pyplot_or_a_backend_switch(tmp_path):
    # In a fresh interpreter, so that sys.modules shows what importing the report pulls in.
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        import matplotlib

        matplotlib.use("svg")  # the caller's choice, which the report must keep
        from sdnseg.studies.report import build_report, save_report
        from sdnseg.studies.spec import RunSpec, Study

        folder = Path(sys.argv[1])
        runs = [RunSpec("base", "fcn_r18d8", [0, 1]), RunSpec("sdn", "x", [0, 1], pair="base")]
        study = Study("fit.yaml", folder / "runs", folder / "results" / "study", runs)
        results = [
            {
                "name": run.name, "seed": seed, "params": 1e6, "gflops": 1.0,
                "seconds_per_epoch": 10.0, "fit_command": "sdnseg fit", "test_command": "sdnseg test",
                "test": {"mIoU": 0.5 + 0.01 * seed + 0.02 * bool(run.pair), "BF@1px": 0.3,
                         "BF@3px": 0.4, "IoU/road": 0.9},
                "history": [{"epoch": e, "step": 10 * e, "val/mIoU": 0.1 * e, "val/BF@1px": 0.05 * e}
                            for e in range(3)],
            }
            for run in runs for seed in run.seeds
        ]
        save_report(build_report(study, results, classes=["road", "sky"]))
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules
        assert "sdnseg.studies.runner" not in sys.modules
        """
    )  # fmt: skip
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=120)
    written = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert written == ["study.json", "study.md", "study_bars.png", "study_curves.png"]
    markdown = (tmp_path / "results" / "study.md").read_text()
    assert (
        "| configuration | road |" in markdown and "![study_bars.png](study_bars.png)" in markdown
    )
    assert json.loads((tmp_path / "results" / "study.json").read_text())["paired"][0]["seed"] == 0


@pytest.mark.filterwarnings("ignore:No artists with labels found")
def test_report_shows_table_3c_rows_paired_with_their_base_and_lists_auxiliary_runs(tmp_path):
    from sdnseg.studies.spec import RunSpec

    runs = [
        RunSpec("base", "semfpn_efflite2", [0, 1]),
        RunSpec("segfix", "segfix_efflite2", [0]),
        RunSpec(
            "base_crf", "semfpn_efflite2", [0, 1], pair="base", test_of="base", postprocess="crf"
        ),
        RunSpec("net", "", [0], command=["train_inverseform"]),
    ]
    study = Study("fit.yaml", tmp_path / "runs", tmp_path / "results" / "study", runs)

    def fit(name, seed, miou):
        return {
            "name": name,
            "seed": seed,
            "params": 2e6,
            "gflops": 3.0,
            "seconds_per_epoch": 60.0,
            "fit_command": f"sdnseg fit {name}",
            "test_command": f"sdnseg test {name}",
            "test": {"mIoU": miou, "BF@1px": 0.3, "BF@3px": 0.4},
            "history": [],
        }

    results = [fit("base", s, 0.50 + 0.01 * s) for s in (0, 1)]
    results += [
        {
            **fit("base", s, 0.53 + 0.01 * s),
            "name": "base_crf",
            "test_of": "base",
            "test_command": f"sdnseg test base --model.postprocess crf seed{s}",
        }
        for s in (0, 1)
    ]
    results += [
        {**fit("segfix", 0, 0.0), "test": {"boundary_F": 0.61, "direction_acc": 0.72}},
        {"name": "net", "seed": 0, "command": "sdnseg train_inverseform --output n.pt"},
    ]
    report = build_report(study, results)
    text = report.markdown_text
    assert "| base_crf | 2 | 53.50 ± 0.71 |" in text
    assert "| base_crf | base | 0 | +3.00 |" in text  # paired with the checkpoint it re-tests
    assert "| segfix | 0 | boundary_F 0.6100, direction_acc 0.7200 |" in text
    assert "| net | 0 | – |" in text
    assert "| segfix |" not in text.split("## Auxiliary")[0]  # not a row of the main table
    commands = text.split("## Commands")[1]
    assert "- base_crf seed 0:\n  `sdnseg test base --model.postprocess crf seed0`\n" in commands
    assert "`sdnseg train_inverseform --output n.pt`" in commands
    data = json.loads(report.json_text)
    assert set(data["summary"]) == {"base", "base_crf"} and len(data["runs"]) == 6
    assert data["paired_summary"]["base_crf"]["mIoU"]["mean"] == pytest.approx(0.03)


def _imported(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names (``from a import b``
    counts as both ``a`` and ``a.b``, since ``b`` may be a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_only_the_runner_imports_the_runner_and_nothing_outside_imports_studies():
    for name in ("__init__.py", "spec.py", "report.py"):
        assert "sdnseg.studies.runner" not in _imported(SRC / "studies" / name), name
    for path in SRC.rglob("*.py"):
        if "studies" not in path.relative_to(SRC).parts:
            outside = {n for n in _imported(path) if n.startswith("sdnseg.studies")}
            assert not outside, f"{path.relative_to(SRC)} imports {outside}"


@pytest.mark.filterwarnings("ignore:No artists with labels found")
def test_report_adds_boundary_iou_trimap_and_per_class_moves_when_runs_have_them(tmp_path):
    from sdnseg.studies.spec import Claim, RunSpec

    runs = [RunSpec("base", "a", [0, 1]), RunSpec("sdn", "b", [0, 1], pair="base")]
    claim = Claim("SDN raises BIoU", "Table 2", "mBIoU", "sdn", "base", paper_delta=0.01)
    study = Study("fit.yaml", tmp_path, tmp_path / "study", runs, claims=[claim])
    widths = (1, 2, 4, 8, 16, 32)

    def result(name, seed, gain):
        test = {"mIoU": 0.5, "BF@1px": 0.3, "BF@3px": 0.4, "mBIoU": 0.40 + gain}
        test |= {
            f"trimap_mIoU@{w}px": 0.2 + 0.05 * i + gain / (i + 1) for i, w in enumerate(widths)
        }
        test |= {"IoU/road": 0.9 + gain / 2, "IoU/sky": 0.8 - gain}
        return {"name": name, "seed": seed, "params": 1e6, "gflops": 1.0, "seconds_per_epoch": 1.0,
                "fit_command": "f", "test_command": "t", "test": test, "history": []}  # fmt: skip

    report = build_report(
        study,
        [
            result("base", 0, 0.0),
            result("base", 1, 0.0),
            result("sdn", 0, 0.02),
            result("sdn", 1, 0.04),
        ],
        classes=["road", "sky"],
    )
    text = report.markdown_text
    assert "| base | 2 | 40.00 ± 0.00 | 20.00 ± 0.00 | 25.00 ± 0.00 |" in text  # mBIoU, 1px, 2px
    # Paired: mBIoU +3 ± 1.41 (2 of 2); trimap at 1 px gains the whole 3, at 2 px half of it.
    assert (
        "| sdn | base | 2 | +3.00 ± 1.41 (2/2) | +3.00 ± 1.41 (2/2) | +1.50 ± 0.71 (2/2) |" in text
    )
    assert "| sdn | 2 | +1.50 (2) | -3.00 (0) |" in text  # which classes move
    assert "| SDN raises BIoU | Table 2 | mBIoU | +1.00 | sdn − base | 2 | +3.00 ± 1.41 |" in text
    assert [p.name for p in report.figures] == [
        "study_curves.png",
        "study_bars.png",
        "study_trimap.png",
    ]
    data = json.loads(report.json_text)
    assert data["claims"][0]["deltas"] == pytest.approx([0.02, 0.04])
    assert data["paired_summary"]["sdn"]["trimap_mIoU@32px"]["mean"] == pytest.approx(0.03 / 6)
