"""The tiny recipe of the engine tests: CLI arguments and helpers.

Every run is FCN-R18-D8's layout on timm's ``resnet10t`` at 32×32 pixels, 8 synthetic training
and 4 validation images, batch 2: a few seconds per fit on one CPU thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

# The smallest backbone timm has; the heads follow its channels.
TINY_MODEL = [
    "--model.arch", "fcn_r18d8",
    "--model.model_overrides", "{backbone: resnet10t, backbone_kwargs: {}}",
]  # fmt: skip
TINY_DATA = [
    "--data.synthetic_size", "32",
    "--data.synthetic_num_train", "8",
    "--data.synthetic_num_val", "4",
    "--data.batch_size", "2",
]  # fmt: skip
QUIET = [
    "--trainer.accelerator", "cpu",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
]  # fmt: skip


def tiny_fit_args(
    runs: Path, name: str, steps: int = 4, data: Sequence[str] = tuple(TINY_DATA)
) -> list[str]:
    """``sdnseg fit`` arguments of a tiny run validating once, at its last step."""
    return [
        "fit",
        *TINY_MODEL,
        *data,
        *QUIET,
        "--runs_dir", str(runs),
        "--name", name,
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", str(steps),
        "--trainer.check_val_every_n_epoch", "null",
        "--trainer.log_every_n_steps", "1",
        "--trainer.deterministic", "true",
    ]  # fmt: skip


def run_subprocess(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python <args>`` with this process's thread count, so results match in-process runs."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
        "PYTHONWARNINGS": "ignore",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def quiet() -> None:
    # Lightning's own use of a deprecated torch pytree API, warned on every fit.
    warnings.filterwarnings("ignore", message=".*treespec")
