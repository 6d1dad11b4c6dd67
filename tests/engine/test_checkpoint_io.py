"""Checkpoints of fit: atomic writes, self-description, loading back, clear mismatch errors.

Reading checkpoints without a fit (the record's versions, load_model's errors) is
tests/inference/test_checkpoint.py.
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import pytest
import torch

import sdnseg
from sdnseg.data import SyntheticShapes
from sdnseg.engine import AtomicCheckpointIO, Predictor, SegmentationModule
from sdnseg.engine import checkpoint_io as ckpt
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.inference.checkpoint import METADATA_KEY, METADATA_KEYS, CheckpointRecord
from sdnseg.models import get_config

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


def test_atomic_write_leaves_the_old_file_whole_when_a_write_dies(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(4)}, path)

    def dies_half_way(obj, file):
        file.write(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt  # a kill arriving mid-write

    monkeypatch.setattr(ckpt.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True)["step"] == 3


def test_checkpoint_is_self_describing(trained):
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    meta = checkpoint[METADATA_KEY]
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["arch"] == "fcn_r18d8" and meta["model_overrides"] == TINY
    assert meta["model_config"] == get_config("fcn_r18d8", **TINY).to_dict()
    assert meta["num_classes"] == 6 and meta["classes"] == [f"class{i}" for i in range(6)]
    assert meta["palette"] == [list(c) for c in SyntheticShapes(1, 16, 6).palette]
    assert meta["mean"] == pytest.approx([123.675, 116.28, 103.53]) and meta["ignore_index"] == 255
    assert meta["base_size"] is None and meta["inference"]["mode"] == "whole"
    assert checkpoint["hyper_parameters"]["num_classes"] == 6
    assert checkpoint["SegmentationDataModule"]["sampler"]["epoch"] == 1  # 4 steps of 4/epoch
    assert ckpt.RNG_KEY in checkpoint
    assert CheckpointRecord.from_dict(meta).to_dict() == meta  # the record reads what fit wrote


def test_load_model_reads_what_fit_wrote(trained):
    model = sdnseg.load_model(trained / "checkpoints" / "last.ckpt")
    assert isinstance(model, Predictor) and not model.training and model.num_classes == 6
    image, _ = SyntheticShapes(1, (37, 45), 6, split="test").generate(0)  # uint8 (H, W, 3)
    labels = model.predict(image)
    assert labels.shape == (37, 45) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < 6


@pytest.mark.parametrize(
    ("arch", "overrides", "match"),
    [
        ("semfpn_r18", TINY, r"holds a 'fcn_r18d8' model but this run builds 'semfpn_r18'"),
        ("fcn_r18d8", {}, r"differs from this run's in \['backbone', 'backbone_kwargs'"),
    ],
)
def test_loading_another_model_is_a_clear_error(trained, tmp_path, arch, overrides, match):
    module = SegmentationModule(arch, 6, overrides)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    data = SegmentationDataModule(synthetic_size=32, synthetic_num_val=2, batch_size=2)
    with pytest.raises(ValueError, match=match):
        trainer.validate(module, datamodule=data, ckpt_path=trained / "checkpoints" / "last.ckpt")


def test_class_count_mismatch_is_a_clear_error(trained):
    module = SegmentationModule("fcn_r18d8", 11, TINY)
    meta = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)["sdnseg"]
    record = CheckpointRecord.from_dict(meta)
    with pytest.raises(ValueError, match="has 6 classes but this run's has 11"):
        ckpt.check_compatible(record, "fcn_r18d8", module.model_config.to_dict(), 11)


def test_load_from_checkpoint_rebuilds_the_module(trained):
    module = SegmentationModule.load_from_checkpoint(trained / "checkpoints" / "last.ckpt")
    assert module.num_classes == 6 and module.model_config.backbone == "resnet10t"


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ckpt.get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]
