"""SegFix through the command line: a tiny fit of segfix_r18, --postprocess segfix in validate and
test, and the errors a user can cause."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from sdnseg.engine import SegmentationModule
from sdnseg.engine.cli import main
from sdnseg.models import SegFixNet
from sdnseg.models.losses import SegFixLoss

from .test_cli import last_row, only_run
from .tiny import QUIET, TINY_DATA, quiet, tiny_fit_args

TINY_SEGFIX = [
    "--model.arch", "segfix_r18",
    "--model.model_overrides", "{backbone: resnet10t, backbone_kwargs: {}}",
    "--checkpoint.monitor", "val/direction_acc",
    "--checkpoint.filename", "best-step={step}",
]  # fmt: skip


@pytest.fixture(scope="module")
def segfix_run(tmp_path_factory) -> Path:
    """The run folder of a tiny segfix_r18 fit (4 steps)."""
    runs = tmp_path_factory.mktemp("segfix_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet()
    args = tiny_fit_args(runs, "segfix")
    args[1:5] = TINY_SEGFIX  # in place of the tiny FCN
    try:
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    return runs / "segfix" / "version_0"


def test_segfix_trains_through_the_cli(segfix_run):
    row = last_row(segfix_run, "val/direction_acc")
    for name in ("boundary_F", "boundary_precision", "boundary_recall", "direction_acc"):
        assert 0 <= float(row[f"val/{name}"]) <= 1
    for name in ("loss", "boundary_loss", "direction_loss"):
        assert float(row[f"val/{name}"]) > 0
    assert float(last_row(segfix_run, "train/loss")["train/loss"]) > 0
    assert (segfix_run / "checkpoints" / "best-step=4.ckpt").is_file()
    checkpoint = torch.load(segfix_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["sdnseg"]["arch"] == "segfix_r18"
    assert checkpoint["sdnseg"]["model_config"]["decoder"] == "segfix"


def test_postprocess_segfix_in_validate_and_test(trained, segfix_run, tmp_path):
    segfix = str(segfix_run / "checkpoints" / "last.ckpt")
    common = ["--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *TINY_DATA, *QUIET]
    common += ["--postprocess", "segfix", "--segfix_checkpoint", segfix]
    assert main(["validate", *common, "--runs_dir", str(tmp_path / "val")]) == 0
    row = last_row(only_run(tmp_path / "val"), "val/mIoU_segfix")
    assert {"val/mIoU", "val/BF@1px_segfix", "val/BF@3px_segfix"} <= set(row)
    args = ["test", *common, "--runs_dir", str(tmp_path / "test"), "--model.segfix_distance", "1"]
    assert main([*args, "--model.test_scales", "[0.75, 1.0]"]) == 0
    row = last_row(only_run(tmp_path / "test"), "test/mIoU")
    for suffix in ("", "_segfix", "_ms", "_ms_segfix"):
        for name in ("mIoU", "BF@1px", "BF@3px"):
            assert 0 <= float(row[f"test/{name}{suffix}"]) <= 1


def test_a_segfix_checkpoint_tests_with_its_own_scores(segfix_run, tmp_path):
    args = ["test", "--ckpt_path", str(segfix_run / "checkpoints" / "last.ckpt"), *TINY_DATA]
    assert main([*args, *QUIET, "--runs_dir", str(tmp_path)]) == 0
    row = last_row(only_run(tmp_path), "test/direction_acc")
    assert "test/mIoU" not in row and float(row["test/loss"]) > 0


def test_user_errors(trained, segfix_run, tmp_path, capsys):
    segmentor = str(trained / "checkpoints" / "last.ckpt")
    segfix = str(segfix_run / "checkpoints" / "last.ckpt")
    runs = ["--runs_dir", str(tmp_path)]
    cases = [
        (["test", "--ckpt_path", segmentor, "--postprocess", "segfix"], "needs --segfix_checkpoint"),
        (
            ["test", "--ckpt_path", segmentor, "--postprocess", "segfix",
             "--segfix_checkpoint", str(tmp_path / "missing.ckpt")],
            "checkpoint not found: .*missing.ckpt",
        ),
        (
            ["test", "--ckpt_path", segmentor, "--postprocess", "segfix",
             "--segfix_checkpoint", segmentor],
            "holds a 'fcn_r18d8' checkpoint, not a SegFix one",
        ),
        (
            ["test", "--ckpt_path", segfix, "--postprocess", "segfix", "--segfix_checkpoint", segfix],
            "segfix_r18' is a SegFix network",
        ),
        (["validate", "--ckpt_path", segfix, "--report", str(tmp_path)], "--report scores label"),
    ]  # fmt: skip
    for args, message in cases:
        assert main([*args, *TINY_DATA, *QUIET, *runs]) == 1
        assert re.search(message, capsys.readouterr().err), message
    images = tmp_path / "a.png"
    Image.new("RGB", (20, 16)).save(images)
    assert main(["predict", "--ckpt_path", segfix, "--predict_path", str(images), *QUIET, *runs])
    assert "refines the label maps of another model" in capsys.readouterr().err


def test_the_segfix_loss_from_specs():
    module = SegmentationModule(arch="segfix_r18", num_classes=3)
    assert isinstance(module.net, SegFixNet) and isinstance(module.criterion, SegFixLoss)
    spec = {"class_path": "sdnseg.models.losses.SegFixLoss", "weight": 2.0}
    spec["init_args"] = {"direction_weight": 0.5}
    module = SegmentationModule(arch="segfix_r18", num_classes=3, losses=[spec])
    assert (module.criterion.boundary_weight, module.criterion.direction_weight) == (2.0, 1.0)
    dice = {"class_path": "sdnseg.models.losses.DiceLoss"}
    with pytest.raises(ValueError, match=r"SegFixLoss alone .*\['DiceLoss'\]"):
        SegmentationModule(arch="segfix_r18", num_classes=3, losses=[dice])
    with pytest.raises(ValueError, match="needs a SegFix network"):
        SegmentationModule(arch="fcn_r18d8", num_classes=3, postprocess="segfix")
