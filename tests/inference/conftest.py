"""Fixtures of the inference tests: a checkpoint written by hand, without Lightning or a fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sdnseg.data import default_palette
from sdnseg.models import build_model, get_config

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


def todays_metadata() -> dict[str, Any]:
    """``checkpoint["sdnseg"]`` spelled out as ``SegmentationModule.metadata()`` wrote it when
    format version 1 was the current one (a tiny FCN on SyntheticShapes' 6 classes)."""
    return {
        "format_version": 1,
        "arch": "fcn_r18d8",
        "model_overrides": {"backbone": "resnet10t", "backbone_kwargs": {}},
        "model_config": get_config("fcn_r18d8", **TINY).to_dict(),
        "num_classes": 6,
        "classes": [f"class{i}" for i in range(6)],
        "palette": [list(c) for c in default_palette(6)],
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "base_size": None,
        "ignore_index": 255,
        "inference": {"mode": "whole", "crop_size": None, "stride": None},
    }


def todays_checkpoint(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole checkpoint in the layout of a fit's ``last.ckpt`` today: Lightning's entries
    (weights under ``net.``), the record under ``sdnseg``, the generators under ``sdnseg_rng``."""
    torch.manual_seed(0)
    net = build_model(get_config("fcn_r18d8", **TINY), 6)
    return {
        "epoch": 1,
        "global_step": 4,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {f"net.{key}": value for key, value in net.state_dict().items()},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hyper_parameters": {"arch": "fcn_r18d8", "num_classes": 6, "model_overrides": TINY},
        "sdnseg": todays_metadata() if meta is None else meta,
        "sdnseg_rng": {"torch": torch.get_rng_state()},
    }


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> Path:
    """A format-version-1 checkpoint file, written by hand (not through CheckpointRecord)."""
    path = tmp_path_factory.mktemp("checkpoints") / "today.ckpt"
    torch.save(todays_checkpoint(), path)
    return path
