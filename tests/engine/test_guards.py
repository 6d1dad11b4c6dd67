"""Runs that fail well: the NaN guard, bad values, data errors, run folders, predict failures,
best-score tracking, stale temporary files, overrides on resume (docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sdnseg.engine.cli import main
from sdnseg.engine.errors import user_message
from sdnseg.inference.checkpoint import first_non_finite

from ..data.layouts import write_folder
from .tiny import QUIET, TINY_MODEL, tiny_fit_args

pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")


def folder_args(root, runs, name, steps=2, workers=0):
    return [
        "fit", *TINY_MODEL, *QUIET,
        "--data.name", "folder", "--data.root", str(root), "--data.crop_size", "[16, 16]",
        "--data.batch_size", "2", "--data.num_workers", str(workers),
        "--runs_dir", str(runs), "--name", name, "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", str(steps), "--trainer.check_val_every_n_epoch", "null",
    ]  # fmt: skip


def test_the_nan_guard_never_writes_non_finite_weights_and_names_the_last_good_one(
    tmp_path, capsys
):
    runs = tmp_path / "runs"
    args = [*tiny_fit_args(runs, "diverge", 8), "--model.lr", "1e6"]
    assert main([*args, "--last_checkpoint.every_n_train_steps", "1"]) == 1
    err = capsys.readouterr().err
    last = runs / "diverge/version_0/checkpoints/last.ckpt"
    assert err.startswith("error: ") and "Traceback" not in err
    if last.is_file():
        state = torch.load(last, weights_only=True)
        assert first_non_finite(state["state_dict"]) is None
        assert f"The last good checkpoint is {last} (step {state['global_step']})" in err
    else:
        assert "No checkpoint was written" in err


def test_a_negative_learning_rate_is_named(tmp_path, capsys):
    assert main([*tiny_fit_args(tmp_path, "neg", 1), "--model.lr", "-1"]) == 1
    assert "error: lr must be positive, got -1" in capsys.readouterr().err


def test_a_data_error_in_a_worker_is_one_message(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    (root / "images/train/img0.png").write_bytes(b"not a png")
    assert main(folder_args(root, tmp_path / "runs", "bad", workers=1)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read image ") and "img0.png" in err
    assert "Traceback" not in err and "DataLoader worker" not in err, err


def test_user_message_keeps_the_original_message_only():
    wrapped = ValueError(
        "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\nValueError: cannot read image a.png: bad'
    )
    assert user_message(wrapped) == "cannot read image a.png: bad"
    assert user_message(ValueError("plain")) == "plain"


def test_a_run_that_fails_at_setup_leaves_no_version_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    args = [*tiny_fit_args(runs, "nodata", 1), "--data.name", "camvid", "--data.root", "."]
    assert main(args) == 1
    assert not list((runs / "nodata").glob("version_*"))


def test_verify_reports_every_bad_file_before_training(tmp_path, capsys):
    root = write_folder(tmp_path / "data")
    bad = np.full((24, 32), 7, dtype=np.uint8)  # class 7 of 3
    for name in ("img2.png", "img3.png"):
        Image.fromarray(bad).save(root / "masks/train" / name)
    runs = tmp_path / "runs"
    assert main([*folder_args(root, runs, "verify"), "--data.verify", "true"]) == 1
    err = capsys.readouterr().err
    assert "--data.verify: 2 of 4 train items cannot be used" in err
    assert "img2.png" in err and "img3.png" in err
    assert not list(runs.rglob("*.ckpt"))


def test_predict_writes_what_it_can_and_exits_non_zero(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(images / f"ok{i}.png")
    (images / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    args = ["predict", "--ckpt_path", str(trained / "checkpoints/last.ckpt"), *QUIET]
    args += ["--predict_path", str(images), "--output_dir", str(out), "--runs_dir", str(tmp_path)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "of 3 images" in err and "1 failed" in err and "broken.png" in err
    assert sorted(p.name for p in out.glob("*_labels.png")) == ["ok0_labels.png", "ok1_labels.png"]


def test_best_score_tracking_survives_a_resume(tmp_path):
    runs = tmp_path / "runs"
    keep = ["--checkpoint.save_top_k", "2"]
    assert main([*tiny_fit_args(runs, "best", 2), *keep]) == 0
    last = runs / "best/version_0/checkpoints/last.ckpt"
    assert main([*tiny_fit_args(runs, "best", 4), *keep, "--ckpt_path", str(last)]) == 0
    state = torch.load(runs / "best/version_1/checkpoints/last.ckpt", weights_only=True)
    (best,) = [v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint")]
    # The step-2 score of the first run is still ranked beside the step-4 one.
    assert len(best["best_k_models"]) == 2
    assert any("version_0" in path for path in best["best_k_models"])
    assert (runs / "best/version_0/checkpoints").glob("best-step=2-*.ckpt")


def test_stale_temporary_checkpoints_are_removed_at_start(tmp_path):
    runs = tmp_path / "runs"
    assert main(tiny_fit_args(runs, "stale", 1)) == 0
    folder = runs / "stale/version_0/checkpoints"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = folder / f".last.ckpt.tmp-{dead}-0123abcd.ckpt"
    live = folder / f".last.ckpt.tmp-{os.getpid()}-4567cdef.ckpt"
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    resume = [*tiny_fit_args(runs, "stale", 2), "--ckpt_path", str(folder / "last.ckpt")]
    assert main(resume) == 0
    assert not stale.exists() and live.exists()


def test_overrides_shadowed_by_a_resume_are_listed(trained, tmp_path):
    last = str(trained / "checkpoints/last.ckpt")
    args = [*tiny_fit_args(tmp_path, "again", 5), "--ckpt_path", last]
    with pytest.warns(UserWarning, match=r"--model.lr 0.5 \(the checkpoint's default is used\)"):
        assert main([*args, "--model.lr", "0.5"]) == 0


def test_weights_only_resume_takes_the_new_hyper_parameters(trained, tmp_path):
    last = str(trained / "checkpoints/last.ckpt")
    args = [*tiny_fit_args(tmp_path, "weights", 2), "--ckpt_path", last, "--model.lr", "0.5"]
    assert main([*args, "--resume_mode", "weights", "--model.schedule_steps", "100"]) == 0
    state = torch.load(tmp_path / "weights/version_0/checkpoints/last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # a new run: counted from 0, not from the checkpoint's 4
    assert state["optimizer_states"][0]["param_groups"][0]["initial_lr"] == 0.5


def test_a_checkpoint_that_does_not_fit_is_one_message_on_resume(trained, tmp_path, capsys):
    state = torch.load(trained / "checkpoints/last.ckpt", weights_only=True)
    name = "net.head.classifier.1.weight"
    state["state_dict"][name] = state["state_dict"][name][:, :1]
    bad = tmp_path / "bad.ckpt"
    torch.save(state, bad)
    assert main([*tiny_fit_args(tmp_path, "shape", 5), "--ckpt_path", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: checkpoint {bad} does not fit this model: {name} is ")
    assert "Traceback" not in err
