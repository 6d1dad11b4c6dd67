import torch


def pytest_configure(config):
    # Two cores are shared by the whole suite; more threads only add contention.
    torch.set_num_threads(min(2, torch.get_num_threads()))
