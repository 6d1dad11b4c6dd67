"""Exact resume everywhere: mid-epoch and at an epoch boundary, 0 or 2 workers, after max_steps,
kill -9, SIGTERM or SIGINT (docs/reliability.md).

Every run trains 12 steps in all, 12 synthetic images in batches of 2 (6 steps an epoch), with
one schedule length (``--model.schedule_steps 12``) so that a run stopped early by ``max_steps``
follows the same learning rates. The reference is one uninterrupted run with ``num_workers=0``:
augmentation is seeded per sample from (seed, epoch, index), so the worker count must not change
a single weight either.
"""

from __future__ import annotations

import signal
import textwrap

import pytest
import torch

from sdnseg.engine.cli import main

from .tiny import run_subprocess, tiny_fit_args

DATA = [
    "--data.synthetic_size", "32",
    "--data.synthetic_num_train", "12",
    "--data.synthetic_num_val", "2",
    "--data.batch_size", "2",
]  # fmt: skip
STEPS = 12

SIGNAL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys

    from lightning.pytorch import Callback

    from sdnseg.engine.cli import main


    class SignalAt(Callback):
        def __init__(self, step: int, signum: int) -> None:
            self.step, self.signum = step, signum

        def on_train_batch_start(self, trainer, *args) -> None:
            if trainer.global_step == self.step:
                os.kill(os.getpid(), self.signum)


    sys.exit(main(sys.argv[1:]))
    """
)


def fit_args(runs, name, steps=STEPS, workers=0):
    args = tiny_fit_args(runs, name, steps, [*DATA, "--data.num_workers", str(workers)])
    args[args.index("--trainer.val_check_interval") + 1] = str(STEPS)
    return [*args, "--model.schedule_steps", str(STEPS)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    assert main(fit_args(runs, "full")) == 0
    return torch.load(runs / "full/version_0/checkpoints/last.ckpt", weights_only=True)


def assert_same_run(checkpoint_path, reference):
    resumed = torch.load(checkpoint_path, weights_only=True)
    assert resumed["global_step"] == reference["global_step"] == STEPS
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=0, msg=name)
    for a, b in zip(
        reference["optimizer_states"][0]["state"].values(),
        resumed["optimizer_states"][0]["state"].values(),
        strict=True,
    ):
        torch.testing.assert_close(b["momentum_buffer"], a["momentum_buffer"], rtol=0, atol=0)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("stop", [3, 6])  # mid-epoch; the last step of epoch 0
def test_resume_after_max_steps_is_exact(tmp_path, reference, workers, stop):
    runs = tmp_path / "runs"
    assert main(fit_args(runs, "part", stop, workers)) == 0
    last = runs / "part/version_0/checkpoints/last.ckpt"
    sampler = torch.load(last, weights_only=True)["SegmentationDataModule"]["sampler"]
    # Where the next batch comes from: epoch 0 after 3 batches, or the start of epoch 1.
    assert (sampler["epoch"], sampler["consumed"]) == ((0, 6) if stop == 3 else (1, 0))
    assert main([*fit_args(runs, "part", STEPS, workers), "--ckpt_path", str(last)]) == 0
    assert_same_run(runs / "part/version_1/checkpoints/last.ckpt", reference)


def run_signalled(tmp_path, runs, step, signum, extra=()):
    script = tmp_path / "signal_run.py"
    script.write_text(SIGNAL_SCRIPT)
    hook = [
        "--trainer.callbacks+=__main__.SignalAt",
        "--trainer.callbacks.step", str(step),
        "--trainer.callbacks.signum", str(int(signum)),
    ]  # fmt: skip
    return run_subprocess([str(script), *fit_args(runs, "cut"), *extra, *hook], tmp_path)


@pytest.mark.slow  # a subprocess and a resume; test_resume.py covers kill -9 mid-epoch in CI
def test_kill_9_at_an_epoch_boundary_then_resume_is_exact(tmp_path, reference):
    runs = tmp_path / "runs"
    every = ["--last_checkpoint.every_n_train_steps", "6"]
    killed = run_signalled(tmp_path, runs, 6, signal.SIGKILL, every)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = runs / "cut/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert main([*fit_args(runs, "cut"), "--ckpt_path", str(last)]) == 0
    assert_same_run(runs / "cut/version_1/checkpoints/last.ckpt", reference)


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(tmp_path, reference):
    runs = tmp_path / "runs"
    # No periodic save: whatever is on disk was written because of the signal.
    stopped = run_signalled(tmp_path, runs, 4, signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    last = runs / "cut/version_0/checkpoints/last.ckpt"
    assert "interrupted by SIGTERM" in stopped.stderr and f"--ckpt_path {last}" in stopped.stderr
    assert torch.load(last, weights_only=True)["global_step"] == 5  # the step under way finished
    assert main([*fit_args(runs, "cut"), "--ckpt_path", str(last)]) == 0
    assert_same_run(runs / "cut/version_1/checkpoints/last.ckpt", reference)


@pytest.mark.slow  # a subprocess; the SIGTERM test runs the same path in CI
def test_sigint_saves_and_exits_130(tmp_path):
    runs = tmp_path / "runs"
    stopped = run_signalled(tmp_path, runs, 2, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "interrupted by SIGINT" in stopped.stderr
    last = runs / "cut/version_0/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
