"""A run killed with SIGKILL mid-epoch and resumed ends exactly where an uninterrupted run ends.

Three tiny fits of 8 steps (2 epochs of 4 batches), ``last.ckpt`` every 3 steps: uninterrupted;
killed (SIGKILL, in a subprocess) right after the step-3 checkpoint, in the middle of epoch 0;
resumed from that checkpoint. The resumed run must see exactly the remaining samples with the same
augmentation and dropout draws, so weights, optimiser state and validation scores must match.
"""

from __future__ import annotations

import csv
import signal
import textwrap

import pytest
import torch

from sdnseg.engine.cli import main

from .tiny import run_subprocess, tiny_fit_args

# The resumed run logs to a new version folder, so Lightning says the best score is not carried.
pytestmark = pytest.mark.filterwarnings("ignore:The dirpath has changed")

KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys

    from lightning.pytorch import Callback

    from sdnseg.engine.cli import main


    class KillAfterCheckpoint(Callback):
        def __init__(self, step: int) -> None:
            self.step = step

        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == self.step:  # the step's checkpoint is on disk
                os.kill(os.getpid(), signal.SIGKILL)


    sys.exit(main(sys.argv[1:]))
    """
)


def read_metrics(run) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as file:
        return list(csv.DictReader(file))


def train_losses(run) -> dict[str, str]:
    return {row["step"]: row["train/loss"] for row in read_metrics(run) if row["train/loss"]}


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path):
    runs = tmp_path / "runs"
    every = ["--last_checkpoint.every_n_train_steps", "3"]
    assert main([*tiny_fit_args(runs, "full", steps=8), *every]) == 0

    script = tmp_path / "kill_run.py"
    script.write_text(KILL_SCRIPT)
    kill = ["--trainer.callbacks+=__main__.KillAfterCheckpoint", "--trainer.callbacks.step", "3"]
    killed = run_subprocess(
        [str(script), *tiny_fit_args(runs, "killed", 8), *every, *kill], tmp_path
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = runs / "killed" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 3
    assert state["SegmentationDataModule"]["sampler"] == {
        "epoch": 0, "consumed": 6, "seed": 0, "num_samples": 8
    }  # fmt: skip

    resume = [*tiny_fit_args(runs, "killed", steps=8), *every, "--ckpt_path", str(last)]
    assert main(resume) == 0

    full_run, resumed_run = runs / "full" / "version_0", runs / "killed" / "version_1"
    full = torch.load(full_run / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(resumed_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert full["global_step"] == resumed["global_step"] == 8
    for name, value in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=1e-6, atol=0)
    for a, b in zip(
        full["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        torch.testing.assert_close(b["momentum_buffer"], a["momentum_buffer"], rtol=1e-6, atol=0)
    # Same batches, same augmentation, same dropout: the same loss at every resumed step.
    resumed_losses = train_losses(resumed_run)
    assert sorted(resumed_losses, key=int) == ["3", "4", "5", "6", "7"]
    assert resumed_losses == {k: v for k, v in train_losses(full_run).items() if int(k) >= 3}
    final = [
        [row for row in read_metrics(run) if row["val/mIoU"]] for run in (full_run, resumed_run)
    ]
    assert final[0] == final[1] and len(final[0]) == 1
