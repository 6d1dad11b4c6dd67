"""Fixtures of the viz tests: one thread, a tiny SDN model and an input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.viz.helpers import tiny


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fcn() -> nn.Module:
    net = tiny("fcn_r18d8_sdn")
    with torch.no_grad():  # a λ away from its initial 1, as after training
        net.neck.sdn.op.raw_lam.fill_(-1.0)
    return net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
