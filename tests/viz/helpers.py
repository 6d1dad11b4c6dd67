"""Tiny SDN models and a PNG check shared by the viz tests."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

import sdnseg

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}, "sdc_channels": 8, "guidance_channels": 8}


def tiny(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return sdnseg.create_model(name, 3, **{**TINY, **overrides}).eval()


def assert_png(path: Path, folder: Path) -> None:
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp file left
