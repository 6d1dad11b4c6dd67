import torch

from sdnseg.nn import _autograd


def pytest_configure(config):
    # Two cores are shared by the whole suite; more threads only add contention.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    # torch.compile of the SDC's element-wise kernels costs tens of seconds per first call;
    # tests/nn/test_autograd.py checks the compiled kernels on their own (marked slow).
    _autograd._COMPILE = "0"
