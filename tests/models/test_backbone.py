"""Backbone: timm feature contract, ResNetV1c-D8 layout, ViT maps, local checkpoints, errors."""

import logging

import pytest
import timm
import torch

from sdnseg.models import Backbone

V1C_STEM = {"stem_type": "deep", "stem_width": 32}


@pytest.mark.parametrize(("output_stride", "reductions"), [(8, [4, 8, 8, 8]), (32, [4, 8, 16, 32])])
def test_resnet_channels_reductions_and_shapes(output_stride, reductions):
    backbone = Backbone("resnet18", (1, 2, 3, 4), output_stride, **V1C_STEM)
    assert backbone.channels == [64, 128, 256, 512]
    assert backbone.reductions == reductions
    features = backbone(torch.randn(1, 3, 64, 96))
    assert [f.shape for f in features] == [
        (1, c, 64 // r, 96 // r) for c, r in zip(backbone.channels, reductions, strict=True)
    ]


def test_resnet_d8_is_v1c_with_contracted_dilation():
    body = Backbone("resnet18", (1, 2, 3, 4), 8, **V1C_STEM).body
    stem = [m for m in body.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in stem] == [
        (3, 32, 2),
        (32, 32, 1),
        (32, 64, 1),
    ]
    # First block of a dilated stage uses the previous dilation (mmseg contract_dilation=True).
    assert [b.conv1.dilation[0] for b in body.layer3] == [1, 2]
    assert [b.conv1.dilation[0] for b in body.layer4] == [2, 4]
    assert all(b.conv1.stride[0] == 1 for b in [*body.layer3, *body.layer4])
    # V1c keeps the strided/1x1 conv shortcut (resnet*d would use avg-pool + conv).
    assert isinstance(body.layer4[0].downsample[0], torch.nn.Conv2d)
    assert "resnet50c" in timm.list_models("resnet*c")


def test_vit_gives_normed_patch_map_at_any_multiple_of_16():
    backbone = Backbone("vit_tiny_patch16_224", (-1,), final_norm=True, dynamic_img_size=True)
    assert backbone.channels == [192] and backbone.reductions == [16]
    assert not isinstance(backbone.body.model.norm, torch.nn.Identity)
    assert backbone(torch.randn(1, 3, 32, 48))[0].shape == (1, 192, 2, 3)


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_local_resnet_checkpoint(tmp_path, wrapper, caplog):
    source = timm.create_model("resnet18", **V1C_STEM)
    state = source.state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    with caplog.at_level(logging.WARNING):
        backbone = Backbone("resnet18", (1, 2, 3, 4), 8, pretrained=path, **V1C_STEM)
    loaded = backbone.body.state_dict()
    assert loaded.keys() <= state.keys()
    for key, value in loaded.items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    assert "fc.weight" in caplog.text  # the classifier is reported as unexpected
    missing, unexpected = backbone.load_checkpoint(path)
    assert missing == [] and sorted(unexpected) == ["fc.bias", "fc.weight"]


def test_local_vit_checkpoint_is_prefixed_and_pos_embed_resized(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", img_size=64)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)
    backbone = Backbone(
        "vit_tiny_patch16_224", (-1,), pretrained=str(path), final_norm=True, dynamic_img_size=True
    )
    vit = backbone.body.model
    torch.testing.assert_close(vit.blocks[-1].mlp.fc2.weight, source.blocks[-1].mlp.fc2.weight)
    torch.testing.assert_close(vit.norm.weight, source.norm.weight)
    assert vit.pos_embed.shape == (1, 197, 192)  # resampled from the 4x4 grid to 14x14


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Backbone("resnet18", (1, 2, 3, 4), pretrained=tmp_path / "nope.pth")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("resnet18", {"out_indices": (1, 5)}, "out_indices"),
        ("vit_tiny_patch16_224", {"out_indices": (12,)}, "out_indices"),
        ("resnet18", {"output_stride": 4}, "output_stride"),
        ("vit_tiny_patch16_224", {"output_stride": 8}, "output_stride"),
        ("resnet_does_not_exist", {}, "unknown timm model"),
    ],
)
def test_backbone_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Backbone(name, **kwargs)
