"""Two-process DDP on CPU (gloo): ``sdnseg fit --trainer.strategy ddp --trainer.devices 2``.

Lightning's DDP launcher re-runs the command line for the second process, so this runs the CLI
in a subprocess (``python -m sdnseg.engine.cli``). Checks that both processes train, the metrics
are synchronised and reported once, rank 0 writes the checkpoints, and SyncBatchNorm stays off on
CPU (PyTorch's runs on CUDA only).
"""

from __future__ import annotations

import csv

import torch

from .tiny import run_subprocess, tiny_fit_args


def test_two_process_cpu_ddp_fit(tmp_path):
    args = [*tiny_fit_args(tmp_path / "runs", "ddp", steps=2), "--trainer.strategy", "ddp"]
    args += ["--trainer.devices", "2", "--trainer.sync_batchnorm", "true"]
    result = run_subprocess(["-m", "sdnseg.engine.cli", *args], tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "ddp" / "version_0"
    assert not (tmp_path / "runs" / "ddp" / "version_1").exists()  # one run folder for both ranks
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    assert "sync_batchnorm needs several CUDA devices; turned off" in result.stderr
    with open(run / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/mIoU")]
    assert len(rows) == 1 and 0 <= float(rows[0]["val/mIoU"]) <= 1
