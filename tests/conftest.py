import os
from importlib.metadata import PackageNotFoundError, version

import torch

# What the run used, printed at the top of every pytest session (so of every CI log): the lower
# bounds in pyproject.toml are checked against these.
_VERSIONS = (
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "torchmetrics",
    "numpy",
    "huggingface_hub",
    "safetensors",
    "onnx",
    "onnxruntime",
    "segmentation-models-pytorch",
)


def pytest_report_header(config):
    found = []
    for name in _VERSIONS:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ["sdnseg ran with: " + ", ".join(found)]


def pytest_configure(config):
    # Two cores are shared by the whole suite; more threads only add contention.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    # Compilation of the SDC kernels is opt-in; a caller's SDNSEG_COMPILE=1 must not make the
    # suite pay tens of seconds per first call (tests/nn opts in where it tests compilation).
    os.environ.pop("SDNSEG_COMPILE", None)
