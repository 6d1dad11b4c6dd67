"""``sdnseg validate|test --report DIR``: the evaluator's files from an sdnseg run."""

from __future__ import annotations

import json

import pytest

from sdnseg.engine.cli import main
from sdnseg.engine.evaluation_report import EvaluationReport

from ..evaluation.test_cli import _Collect
from .test_cli import last_row, only_run
from .tiny import QUIET, TINY_DATA


def _run(command, trained, tmp_path, *extra):
    report = tmp_path / "report"
    args = [command, "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *TINY_DATA]
    args += [*QUIET, "--runs_dir", str(tmp_path / "runs"), "--report", str(report), *extra]
    assert main(args) == 0
    return report, only_run(tmp_path / "runs")


def test_validate_report_holds_the_runs_own_scores(trained, tmp_path):
    report, run = _run("validate", trained, tmp_path, "--report_top_k", "2")
    scores = json.loads((report / "evaluation.json").read_text())
    logged = last_row(run, "val/mIoU")
    # The report's suite and the module's metrics score the same predictions independently.
    for name in ("mIoU", "BF@1px", "BF@3px", "BF@1px_skip"):
        assert scores["headline"][name] == pytest.approx(float(logged[f"val/{name}"]), abs=1e-6)
    assert scores["stage"] == "validation" and scores["images"] > 0
    assert "mBIoU" in scores["headline"]
    assert set(scores["trimap"]) == {"1", "2", "4", "8", "16", "32"}
    assert len(scores["worst_boundary_iou"]) == 2
    parser = _Collect()
    parser.feed((report / "report.html").read_text())
    # trimap curve, confusion matrix and the two error maps, inlined
    assert len(parser.images) == 4 and parser.tags.count("table") == 2
    assert (report / "per_class.csv").read_text().startswith("class,")


def test_test_report_scores_the_most_refined_variant(trained, tmp_path):
    extra = ["--model.test_scales", "[0.75, 1.0]", "--model.test_flip", "true"]
    report, run = _run("test", trained, tmp_path, "--report_top_k", "0", *extra)
    scores = json.loads((report / "evaluation.json").read_text())
    logged = last_row(run, "test/mIoU_ms")
    assert scores["headline"]["mIoU"] == pytest.approx(float(logged["test/mIoU_ms"]), abs=1e-6)
    assert "multi-scale" in scores["scored"] and scores["worst_boundary_iou"] == []


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="top_k"):
        EvaluationReport("out", top_k=-1)
