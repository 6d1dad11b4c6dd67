"""``sdnseg validate|test --report DIR``: the evaluator's files from an sdnseg run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdnseg.engine.cli import main
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.evaluation_report import EvaluationReport
from sdnseg.evaluation.outputs import write_label_png

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


def test_report_predictions_are_the_scored_maps(trained, tmp_path):
    """``sdnseg evaluate`` of the written maps against the data's own masks gives the report's
    scores: the files are the maps scored, one per image, named by it."""
    report, _ = _run(
        "test", trained, tmp_path, "--report_top_k", "0", "--report_predictions", "true"
    )
    scores = json.loads((report / "evaluation.json").read_text())
    data = SegmentationDataModule(
        synthetic_size=32, synthetic_num_train=8, synthetic_num_val=4, batch_size=2
    )
    data.setup("test")
    gt = tmp_path / "gt"
    for batch in data.test_dataloader():
        for path, mask in zip(batch["path"], batch["mask"], strict=True):
            write_label_png(gt / f"{Path(path).stem}.png", mask.numpy())
    written = sorted(p.name for p in (report / "predictions").iterdir())
    assert written == [f"{p.stem}_labels.png" for p in sorted(gt.iterdir())]
    out = tmp_path / "evaluated"
    args = ["--pred", str(report / "predictions"), "--gt", str(gt), "--dataset", "folder"]
    args += ["--num-classes", str(len(scores["per_class"])), "--output", str(out)]
    assert main(["evaluate", *args, "--no-progress"]) == 0
    again = json.loads((out / "evaluation.json").read_text())
    for name, value in scores["headline"].items():
        assert again["headline"][name] == pytest.approx(value, abs=1e-6), name


def test_report_predictions_need_a_report(trained, tmp_path, capsys):
    args = ["test", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *TINY_DATA, *QUIET]
    args += ["--runs_dir", str(tmp_path / "runs"), "--report_predictions", "true"]
    assert main(args) == 1
    assert "--report_predictions true needs --report DIR" in capsys.readouterr().err
