"""Reading checkpoints: the record and its versions, load_model + predict, clear errors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

import sdnseg
from sdnseg.data import SyntheticShapes
from sdnseg.inference import CheckpointRecord, DataInfo, InferenceSettings, Predictor, load_model
from sdnseg.inference.checkpoint import FORMAT_VERSION, METADATA_KEYS, read_checkpoint
from sdnseg.models import build_model, get_config

from .conftest import TINY, todays_checkpoint, todays_metadata


def test_todays_format_reads_into_the_record_and_back():
    meta = todays_metadata()
    record = CheckpointRecord.from_dict(meta)
    assert record.format_version == 1 and record.arch == "fcn_r18d8" and record.num_classes == 6
    assert record.model_config == get_config("fcn_r18d8", **TINY).to_dict()
    assert record.data.classes == tuple(f"class{i}" for i in range(6))
    assert record.data.mean == pytest.approx((123.675, 116.28, 103.53))
    assert record.inference == InferenceSettings("whole", None, None)
    assert record.to_dict() == meta and list(record.to_dict()) == list(meta)
    assert set(meta) == set(METADATA_KEYS)


def test_record_survives_a_weights_only_save(tmp_path):
    record = CheckpointRecord(
        arch="fcn_r18d8",
        model_overrides=dict(TINY),
        model_config=get_config("fcn_r18d8", **TINY).to_dict(),
        num_classes=2,
        data=DataInfo(("road", "sky"), [(128, 64, 128), (70, 130, 180)], base_size=[8, 16]),
        inference=InferenceSettings("slide", [8, 8], [4, 4]),
    )
    torch.save({"sdnseg": record.to_dict()}, tmp_path / "record.pt")
    loaded = torch.load(tmp_path / "record.pt", weights_only=True)["sdnseg"]
    assert CheckpointRecord.from_dict(loaded) == record
    assert record.format_version == FORMAT_VERSION
    assert record.inference.crop_size == (8, 8) and record.data.base_size == (8, 16)


def test_data_info_completes_generic_classes_and_colours():
    data = DataInfo().complete(3)
    assert data.classes == ("class0", "class1", "class2") and len(data.palette) == 3
    assert DataInfo(classes=["a"], palette=[[1, 2, 3]]).complete(1).palette == ((1, 2, 3),)


def test_an_unknown_format_version_is_a_clear_error(tmp_path):
    path = tmp_path / "future.ckpt"
    torch.save(todays_checkpoint({**todays_metadata(), "format_version": 2}), path)
    with pytest.raises(
        ValueError, match=re.escape(f"{path} holds an sdnseg checkpoint of format version 2")
    ):
        load_model(path)
    with pytest.raises(ValueError, match="written by a newer sdnseg"):
        load_model(path)
    with pytest.raises(ValueError, match=r"version 0, but this sdnseg reads versions 1 to 1$"):
        CheckpointRecord.from_dict({**todays_metadata(), "format_version": 0})
    with pytest.raises(ValueError, match="no integer format_version"):
        CheckpointRecord.from_dict({**todays_metadata(), "format_version": "1"})


def test_missing_entries_are_named(tmp_path):
    meta = todays_metadata()
    del meta["palette"], meta["inference"]["stride"]
    path = tmp_path / "edited.ckpt"
    torch.save(todays_checkpoint(meta), path)
    with pytest.raises(ValueError, match=r"edited\.ckpt.*lacks \['palette', 'inference\.stride'\]"):
        load_model(path)


def test_load_model_predicts_label_maps_at_the_image_size(checkpoint_path):
    model = sdnseg.load_model(checkpoint_path)
    assert isinstance(model, Predictor) and not model.training and model.num_classes == 6
    image, _ = SyntheticShapes(1, (37, 45), 6, split="test").generate(0)  # uint8 (H, W, 3)
    labels = model.predict(image)
    assert labels.shape == (37, 45) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < 6
    chw = torch.from_numpy(image).permute(2, 0, 1)
    for same in (Image.fromarray(image), chw, chw.permute(1, 2, 0), chw.float()):
        assert torch.equal(model.predict(same), labels)
    # The same as the evaluation pipeline by hand: normalise, forward, argmax.
    mean = torch.tensor(model.mean).view(3, 1, 1)
    std = torch.tensor(model.std).view(3, 1, 1)
    with torch.no_grad():
        logits = model((chw.float() - mean).div(std)[None])
    assert torch.equal(logits.argmax(1)[0], labels)
    assert model.predict(image, scales=(0.5, 1.0), flip=True).shape == (37, 45)
    assert model.colorize(labels).shape == (37, 45, 3)


def test_load_model_takes_the_weights_and_the_record(checkpoint_path):
    checkpoint, record = read_checkpoint(checkpoint_path)
    model = load_model(checkpoint_path)
    for key, value in model.net.state_dict().items():
        torch.testing.assert_close(value, checkpoint["state_dict"][f"net.{key}"])
    assert model.classes == record.data.classes and model.palette == list(record.data.palette)
    assert model.base_size is None and model.mode == "whole" and model.ignore_index == 255


def test_load_model_resizes_to_the_test_base_size_and_back(tmp_path):
    torch.save(todays_checkpoint({**todays_metadata(), "base_size": [16, 16]}), tmp_path / "s.ckpt")
    model = sdnseg.load_model(tmp_path / "s.ckpt")
    assert model.preprocess(np.zeros((40, 80, 3), np.uint8)).shape == (1, 3, 8, 16)
    assert model.predict(np.zeros((40, 80, 3), np.uint8)).shape == (40, 80)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        sdnseg.load_model(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="not an sdnseg checkpoint"):
        sdnseg.load_model(tmp_path / "plain.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*text\.ckpt"):
        sdnseg.load_model(tmp_path / "text.ckpt")


def test_a_model_given_from_python_needs_the_model(tmp_path):
    path = tmp_path / "python.ckpt"
    torch.save(todays_checkpoint({**todays_metadata(), "arch": None, "model_config": None}), path)
    with pytest.raises(ValueError, match="model given from Python"):
        load_model(path)
    with pytest.raises(ValueError, match=r"the weights in .*python\.ckpt do not fit the model"):
        load_model(path, model=torch.nn.Conv2d(3, 6, 1))
    net = build_model(get_config("fcn_r18d8", **TINY), 6)
    assert load_model(path, model=net).net is net
