import os

import torch


def pytest_configure(config):
    # Two cores are shared by the whole suite; more threads only add contention.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    # Compilation of the SDC kernels is opt-in; a caller's SDNSEG_COMPILE=1 must not make the
    # suite pay tens of seconds per first call (tests/nn opts in where it tests compilation).
    os.environ.pop("SDNSEG_COMPILE", None)
