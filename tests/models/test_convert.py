"""Backbone checkpoints in torchvision's and mmseg's ResNet key layouts, written by the tests."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
import torchvision

from sdnseg.models import create_model
from sdnseg.models.convert import (
    convert_mmseg_resnet_v1c,
    convert_torchvision_resnet,
    detect_format,
    load_backbone_checkpoint,
)

STEM_KEYS = ("conv1.", "bn1.")


def _randomise_bn_stats(model: torch.nn.Module) -> None:
    """Non-default running statistics, so that loading them is visible."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(7)


def _assert_loaded(backbone: torch.nn.Module, source: dict, skip=()) -> int:
    """Every backbone tensor (but those starting with ``skip``) equals the source's; the count."""
    own = backbone.body.state_dict()
    checked = 0
    for key, value in own.items():
        if key.startswith(skip):
            continue
        assert torch.equal(value, source[key]), key
        checked += 1
    return checked


def _to_mmseg(timm_state: dict) -> dict:
    """timm deep-stem ResNet keys -> mmcv ResNetV1c keys, written independently of convert.py."""
    stem = {"conv1.0": "stem.0", "conv1.1": "stem.1", "conv1.3": "stem.3", "conv1.4": "stem.4"}
    stem |= {"conv1.6": "stem.6", "bn1": "stem.7"}
    out = {}
    for key, value in timm_state.items():
        module, _, leaf = key.rpartition(".")
        out["backbone." + stem.get(module, module) + "." + leaf] = value
    return out


@pytest.mark.parametrize(
    ("arch", "model", "overrides"),
    [
        ("resnet18", "fcn_r18d8", {"backbone": "resnet18", "backbone_kwargs": {}}),
        ("resnet50", "fcn_r50d8", {"backbone": "resnet50"}),
    ],
)
def test_torchvision_resnet_into_plain_stem_backbone(tmp_path, arch, model, overrides):
    net = getattr(torchvision.models, arch)()
    _randomise_bn_stats(net)
    source = net.state_dict()
    path = tmp_path / f"{arch}.pth"
    torch.save(source, path)
    assert detect_format(source) == "torchvision"
    backbone = create_model(model, 3, **overrides).backbone
    missing, unexpected = load_backbone_checkpoint(backbone, path)
    assert (missing, unexpected) == ([], [])
    assert _assert_loaded(backbone, source) == len(source) - 2  # all but fc.weight, fc.bias


def test_torchvision_into_deep_stem_reports_the_stem(tmp_path, caplog):
    source = torchvision.models.resnet18().state_dict()
    path = tmp_path / "tv.pth"
    torch.save({"state_dict": source}, path)
    backbone = create_model("fcn_r18d8", 3).backbone  # deep stem
    own = backbone.body.state_dict()
    stem_before = {k: v.clone() for k, v in own.items() if k.startswith(STEM_KEYS)}
    with caplog.at_level(logging.WARNING):
        missing, unexpected = load_backbone_checkpoint(backbone, path, format="torchvision")
    # BatchNorm fills in an absent num_batches_tracked itself, so it is never "missing".
    assert sorted(missing) == sorted(k for k in stem_before if "num_batches" not in k)
    assert "conv1.weight" in unexpected and "bn1.running_var" in unexpected
    assert "deep" in caplog.text and str(path) in caplog.text
    _assert_loaded(backbone, source, skip=STEM_KEYS)
    for key, value in stem_before.items():  # bn1 fits by shape but belongs to another conv
        assert torch.equal(backbone.body.state_dict()[key], value), key


@pytest.mark.parametrize(
    ("arch", "kwargs", "model"),
    [
        ("resnet18", {"stem_type": "deep", "stem_width": 32}, "fcn_r18d8"),
        ("resnet50c", {}, "fcn_r50d8"),
    ],
)
def test_mmseg_resnet_v1c(tmp_path, arch, kwargs, model):
    torch.manual_seed(1)
    net = timm.create_model(arch, features_only=True, output_stride=8, **kwargs)
    _randomise_bn_stats(net)
    timm_state = net.state_dict()
    mmseg = _to_mmseg(timm_state)
    assert "backbone.stem.7.running_mean" in mmseg and "backbone.stem.6.weight" in mmseg
    mmseg["decode_head.conv_seg.weight"] = torch.zeros(19, 512, 1, 1)
    path = tmp_path / "mmseg.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": mmseg}, path)
    backbone = create_model(model, 3).backbone
    missing, unexpected = load_backbone_checkpoint(backbone, path)
    assert (missing, unexpected) == ([], [])
    assert _assert_loaded(backbone, timm_state) == len(timm_state)


def test_mmseg_imagenet_layout_with_classifier():
    state = _to_mmseg({"conv1.0.weight": torch.ones(1), "layer1.0.conv1.weight": torch.ones(1)})
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    state["fc.weight"] = torch.ones(2)
    assert detect_format(state) == "mmseg"
    assert set(convert_mmseg_resnet_v1c(state)) == {"conv1.0.weight", "layer1.0.conv1.weight"}


def test_timm_deep_stem_checkpoint_is_loaded_as_is(tmp_path):
    source = timm.create_model("resnet18", stem_type="deep", stem_width=32)
    state = source.state_dict()  # layer1.0.conv1.weight must not pass for torchvision's conv1
    assert detect_format(state) == "timm"
    path = tmp_path / "timm.pth"
    torch.save(state, path)
    backbone = create_model("fcn_r18d8", 3).backbone
    missing, unexpected = load_backbone_checkpoint(backbone, path)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]
    assert _assert_loaded(backbone, state) == len(state) - 2


def test_sdnseg_checkpoint_is_timm_format(tmp_path):
    source = create_model("fcn_r18d8", 3)
    path = tmp_path / "sdnseg.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    backbone = create_model("fcn_r18d8", 3).backbone
    assert load_backbone_checkpoint(backbone, path) == ([], [])
    _assert_loaded(backbone, source.backbone.body.state_dict())


def test_converters_reject_other_layouts():
    with pytest.raises(ValueError, match="torchvision ResNet"):
        convert_torchvision_resnet({"stem.0.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="ResNetV1c"):
        convert_mmseg_resnet_v1c({"conv1.weight": torch.ones(1), "layer1.0.x": torch.ones(1)})
    with pytest.raises(ValueError, match="stem.9.weight"):
        convert_mmseg_resnet_v1c({"stem.9.weight": torch.ones(1), "layer1.0.x": torch.ones(1)})


def test_load_errors_name_the_file(tmp_path):
    backbone = create_model("fcn_r18d8", 3).backbone
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_backbone_checkpoint(backbone, tmp_path / "nothing.pth")
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"encoder.weight": torch.ones(2)}, unrelated)
    with pytest.raises(ValueError, match="unrelated.pth.*no weight fits"):
        load_backbone_checkpoint(backbone, unrelated)
    tv = tmp_path / "tv.pth"
    torch.save({"conv1.weight": torch.ones(1), "layer1.0.conv1.weight": torch.ones(1)}, tv)
    with pytest.raises(ValueError, match="tv.pth.*mmseg"):
        load_backbone_checkpoint(backbone, tv, format="mmseg")
    with pytest.raises(ValueError, match="format must be one of"):
        load_backbone_checkpoint(backbone, tv, format="caffe")
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "hub": logging.getLogger("x")}, pickled)
    with pytest.raises(ValueError, match="pickled.pth.*weights_only"):
        load_backbone_checkpoint(backbone, pickled)
