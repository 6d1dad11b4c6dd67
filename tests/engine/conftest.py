"""Fixtures of the engine tests: one thread, quiet warnings, one short training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdnseg.engine.cli import main

from .tiny import quiet, tiny_fit_args


@pytest.fixture(autouse=True)
def _one_thread_quiet():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """The run folder of one tiny fit (4 steps); its ``checkpoints/last.ckpt`` serves the
    evaluation, prediction and loading tests."""
    runs = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet()
    try:
        assert main(tiny_fit_args(runs, "trained")) == 0
    finally:
        torch.set_num_threads(threads)
    return runs / "trained" / "version_0"
