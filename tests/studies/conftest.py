"""Fixtures of the study tests: one thread and quiet warnings, as in the engine tests."""

from __future__ import annotations

import pytest
import torch

from tests.engine.tiny import quiet


@pytest.fixture(autouse=True)
def _one_thread_quiet():
    # The study tests share two cores with the rest of the suite; the qualitative figure's
    # predictions run in this process.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet()
    yield
    torch.set_num_threads(threads)
