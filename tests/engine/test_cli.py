"""The ``sdnseg`` command in-process: run folders, validate/test/predict, configs and errors."""

from __future__ import annotations

import csv
import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sdnseg.data import DATASETS, SyntheticShapes
from sdnseg.engine import cli
from sdnseg.engine.cli import main
from sdnseg.models import list_models

from .tiny import QUIET, TINY_DATA, TINY_MODEL, tiny_fit_args

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
HAS_CRF = importlib.util.find_spec("pydensecrf") is not None


def last_row(run: Path, key: str) -> dict[str, str]:
    """The last metrics.csv row that has ``key``."""
    with open(run / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get(key)]
    assert rows, f"no {key} in {run / 'metrics.csv'}"
    return rows[-1]


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.glob("*/version_*") if p.is_dir()]
    return run


def test_fit_writes_one_run_folder(trained):
    assert (trained / "config.yaml").is_file()
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["model"]["arch"] == "fcn_r18d8" and config["trainer"]["max_steps"] == 4
    assert list(trained.glob("events.out.tfevents.*"))
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert len(list((trained / "checkpoints").glob("best-step=4-*.ckpt"))) == 1
    row = last_row(trained, "val/mIoU")
    for key in ("val/loss", "val/BF@1px", "val/BF@3px", "val/BF@1px_skip", "val/BF@3px_skip"):
        assert row[key] != ""
    assert last_row(trained, "train/loss")["train/lr"] != ""


def test_validate_takes_the_network_from_the_checkpoint(trained, tmp_path):
    args = ["validate", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt")]
    assert main([*args, *TINY_DATA, *QUIET, "--runs_dir", str(tmp_path)]) == 0
    run = tmp_path / "fcn_r18d8_synthetic" / "version_0"
    fit_score = last_row(trained, "val/mIoU")["val/mIoU"]
    assert float(last_row(run, "val/mIoU")["val/mIoU"]) == pytest.approx(float(fit_score))


def test_test_reports_single_and_multi_scale_side_by_side(trained, tmp_path):
    args = ["test", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *TINY_DATA, *QUIET]
    args += ["--runs_dir", str(tmp_path), "--model.test_scales", "[0.75, 1.0, 1.25]"]
    args += ["--model.test_flip", "true"]
    if HAS_CRF:
        args += ["--postprocess", "crf"]
    assert main(args) == 0
    row = last_row(only_run(tmp_path), "test/mIoU")
    suffixes = ["", "_ms"] + (["_crf", "_ms_crf"] if HAS_CRF else [])
    for suffix in suffixes:
        for name in ("mIoU", "mAcc", "aAcc", "BF@1px", "BF@3px", "BF@1px_skip", "BF@3px_skip"):
            assert 0 <= float(row[f"test/{name}{suffix}"]) <= 1
    assert {f"test/IoU/class{c}" for c in range(6)} <= set(row)  # per class, single scale
    assert not any(k.startswith("test/IoU/") and "_ms" in k for k in row)
    if HAS_CRF:  # the study's per-class table of a DenseCRF re-test reads these
        assert {f"test/IoU/class{c}_crf" for c in range(6)} <= set(row)


def write_camvid(root: Path, splits: dict[str, int]) -> Path:
    """A CamVid-layout folder: ``split/x.png`` and ``splitannot/x.png`` (labels 0..10, 11 void)."""
    rng = np.random.default_rng(0)
    for split, count in splits.items():
        for folder in (root / split, root / f"{split}annot"):
            folder.mkdir(parents=True)
        for index in range(count):
            image, mask = SyntheticShapes(1, (24, 32), 11, seed=index, split=split).generate(0)
            mask = np.where(rng.random(mask.shape) < 0.05, 11, mask)
            Image.fromarray(image).save(root / split / f"{index:03d}.png")
            Image.fromarray(mask.astype(np.uint8)).save(root / f"{split}annot" / f"{index:03d}.png")
    return root


def test_checkpoints_score_any_camvid_split(tmp_path):
    root = write_camvid(tmp_path / "camvid", {"train": 4, "val": 2, "unseen": 2})
    camvid = ["--data.name", "camvid", "--data.root", str(root), "--data.crop_size", "[24, 32]"]
    data = [*camvid, "--data.batch_size", "2"]
    assert main(tiny_fit_args(tmp_path / "runs", "camvid", steps=2, data=data)) == 0
    last = tmp_path / "runs" / "camvid" / "version_0" / "checkpoints" / "last.ckpt"
    test = ["test", "--ckpt_path", str(last), *camvid, *QUIET, "--data.test_split", "unseen"]
    assert main([*test, "--runs_dir", str(tmp_path / "test")]) == 0
    row = last_row(only_run(tmp_path / "test"), "test/mIoU")
    assert "test/IoU/Bicyclist" in row


def test_predict_writes_labels_colours_overlays_and_error_maps(trained, tmp_path):
    images, masks = tmp_path / "photos", tmp_path / "photosannot"
    images.mkdir()
    masks.mkdir()
    sizes = {"a": (30, 40), "b": (41, 27)}
    for stem, size in sizes.items():
        image, mask = SyntheticShapes(1, size, 6, split=stem).generate(0)
        Image.fromarray(image).save(images / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8)).save(masks / f"{stem}.png")
    out = tmp_path / "out"
    args = ["predict", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *QUIET]
    args += ["--predict_path", str(images / "*.png"), "--show_errors", "true"]
    assert main([*args, "--runs_dir", str(tmp_path / "runs"), "--output_dir", str(out)]) == 0
    for stem, (height, width) in sizes.items():
        labels = Image.open(out / f"{stem}_labels.png")
        assert labels.mode == "L" and labels.size == (width, height)
        assert np.asarray(labels).max() < 6
        for kind in ("color", "overlay", "errors"):
            picture = Image.open(out / f"{stem}_{kind}.png")
            assert picture.mode == "RGB" and picture.size == (width, height)
        # Figure 1's error map: black exactly where the prediction is right.
        errors = np.asarray(Image.open(out / f"{stem}_errors.png"))
        right = np.asarray(labels) == np.asarray(Image.open(masks / f"{stem}.png"))
        assert (errors[right] == 0).all() and (errors[~right].max(axis=-1) > 0).all()
    # Without --output_dir the pictures go into the run folder.
    args = ["predict", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *QUIET]
    assert main([*args, "--predict_path", str(images / "a.png"), "--runs_dir", str(tmp_path)]) == 0
    run = tmp_path / "fcn_r18d8_predict" / "version_0"
    assert sorted(p.name for p in (run / "predictions").iterdir()) == [
        "a_color.png",
        "a_labels.png",
        "a_overlay.png",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_resolves(config, capsys):
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["arch"] in list_models()
    assert resolved["data"]["name"] in DATASETS
    assert resolved["trainer"]["max_steps"] > 0


def fit_error(args: list[str], capsys) -> str:
    code = main(["fit", *args, *QUIET, "--trainer.max_steps", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model.arch", "fcn_r99"],
            r"^error: unknown model 'fcn_r99'; known models: \['fcn_r50d8'",
        ),
        ([*TINY_MODEL, "--data.name", "kitti"], r"^error: unknown dataset 'kitti'; known: \["),
        ([*TINY_MODEL, "--model.learning_rate", "1"], r"error: unrecognized arguments: --model"),
        (
            [*TINY_MODEL, "--data.name", "camvid", "--data.root", "."],
            r"^error: CamVid split 'train'",
        ),
        ([*TINY_MODEL, *TINY_DATA, "--model.num_classes", "3"], r"^error: the model predicts 3"),
    ],
    ids=["model", "dataset", "key", "layout", "classes"],
)
def test_bad_input_is_one_message(args, message, capsys, tmp_path):
    assert re.search(message, fit_error([*args, "--runs_dir", str(tmp_path)], capsys))


def test_a_checkpoint_of_another_model_is_one_message(trained, capsys, tmp_path):
    args = ["validate", "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"), *QUIET]
    args += ["--model.arch", "semfpn_r18", *TINY_DATA, "--runs_dir", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: the checkpoint holds a 'fcn_r18d8' model") and "Traceback" not in err
    )


def test_other_subcommands_are_dispatched_lazily(monkeypatch, capsys):
    tool = types.ModuleType("sdnseg_fake_tool")
    tool.main = lambda argv: len(argv)
    monkeypatch.setitem(sys.modules, "sdnseg_fake_tool", tool)
    monkeypatch.setitem(cli.COMMANDS, "fake", "sdnseg_fake_tool:main")
    monkeypatch.setitem(cli.COMMANDS, "gone", "sdnseg_no_such_module:main")
    monkeypatch.setitem(cli.COMMANDS, "nofunc", "sdnseg_fake_tool:run")
    assert main(["fake", "--x", "1"]) == 2
    assert main(["gone"]) == 1
    assert "'sdnseg gone' is not available" in capsys.readouterr().err
    assert main(["nofunc"]) == 1
    assert "no sdnseg_fake_tool:run" in capsys.readouterr().err
    assert set(cli.COMMANDS) >= {"demo", "visualize_sdn", "export", "study"}


def test_device_count_reads_every_devices_form():
    assert cli._device_count(2, gpu=False) == 2
    assert cli._device_count("2", gpu=True) == 2
    assert cli._device_count([0, 1, 2], gpu=True) == 3
    assert cli._device_count("0,1", gpu=True) == 2
    assert cli._device_count("auto", gpu=False) == 1


STUDIES = sorted((Path(__file__).resolve().parents[2] / "configs" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in STUDIES if not p.stem.endswith("_train")], ids=str)
def test_every_study_resolves_with_every_run(path, capsys):
    """Each run of a study is its fit config plus the run's arch and overrides: all resolve."""
    from sdnseg.models import get_config
    from sdnseg.studies.spec import Study

    study = Study.load(path)
    assert (
        main(
            [
                "fit",
                "--config",
                str(study.config),
                "--model.arch",
                study.runs[0].arch,
                "--print_config",
            ]
        )
        == 0
    )
    capsys.readouterr()
    for run in study.runs:
        if run.kind != "command":  # a command (the inverse net) builds no zoo model
            get_config(run.arch, **run.overrides)
