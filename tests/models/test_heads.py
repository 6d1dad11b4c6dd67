"""Decode heads: shapes, the mmseg layer layout and parameter counts."""

import pytest
import torch
from torch import nn

from sdnseg.models.heads import FPN, FCNHead, SegmenterMaskHead, SemanticFPNHead


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_fcn_head_matches_mmseg_layout():
    head = FCNHead(2048, 19)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    # convs[0..1]: 2048->512, 512->512; conv_cat: 2560->512; classifier 1x1 with bias.
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (2048, 512, (3, 3)),
        (512, 512, (3, 3)),
        (2560, 512, (3, 3)),
        (512, 19, (1, 1)),
    ]
    assert [c.bias is None for c in convs] == [True, True, True, False]
    conv_bn = 9 * (2048 * 512 + 512 * 512 + 2560 * 512) + 3 * 2 * 512
    assert _params(head) == conv_bn + 512 * 19 + 19
    assert isinstance(head.classifier[0], nn.Dropout2d) and head.classifier[0].p == 0.1


def test_fcn_head_shapes_and_aux_configuration():
    features = [torch.randn(2, 8, 9, 7), torch.randn(2, 16, 9, 7)]
    assert FCNHead(16, 3, channels=4).eval()(features).shape == (2, 3, 9, 7)
    aux = FCNHead(8, 3, channels=4, num_convs=1, concat_input=False, in_index=-2)
    assert aux.conv_cat is None and len(aux.convs) == 1
    assert aux.eval()(features).shape == (2, 3, 9, 7)
    assert isinstance(
        FCNHead(16, 3, channels=16, num_convs=0, dropout=0).classifier[0], nn.Identity
    )
    with pytest.raises(ValueError, match="num_convs=0"):
        FCNHead(16, 3, channels=4, num_convs=0)


def test_fpn_has_biases_no_norm_and_keeps_sizes():
    fpn = FPN([8, 16, 32], out_channels=4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fpn.modules())
    assert all(m.bias is not None for m in fpn.modules() if isinstance(m, nn.Conv2d))
    features = [torch.randn(1, c, s, s + 1) for c, s in ((8, 13), (16, 7), (32, 4))]
    assert [f.shape for f in fpn(features)] == [(1, 4, s, s + 1) for s in (13, 7, 4)]


def test_semantic_fpn_head_scale_heads_and_output_stride():
    head = SemanticFPNHead([8, 16, 32, 64], 5, (4, 8, 16, 32), fpn_channels=16, channels=8)
    convs = [[m for m in sh if isinstance(m, nn.Sequential)] for sh in head.scale_heads]
    ups = [[m for m in sh if isinstance(m, nn.Upsample)] for sh in head.scale_heads]
    assert [len(c) for c in convs] == [1, 1, 2, 3]
    assert [len(u) for u in ups] == [0, 1, 2, 3]
    # Odd input sizes: each level is resized onto the finest one.
    features = [torch.randn(2, c, s, s) for c, s in ((8, 25), (16, 13), (32, 7), (64, 4))]
    assert head.eval()(features).shape == (2, 5, 25, 25)
    with pytest.raises(ValueError, match="feature_strides"):
        SemanticFPNHead([8, 16], 5, (4, 8, 16))


def test_semantic_fpn_r50_head_size():
    head = SemanticFPNHead([256, 512, 1024, 2048], 19)
    fpn = (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (9 * 256 * 256 + 256)
    scale = 4 * (9 * 256 * 128 + 256) + 3 * (9 * 128 * 128 + 256)
    assert _params(head) == fpn + scale + 128 * 19 + 19


def test_segmenter_mask_head():
    head = SegmenterMaskHead(32, 6, num_layers=2, num_heads=4, embed_dims=16)
    assert head.patch_proj.bias is None and head.classes_proj.bias is None
    assert head.cls_emb.shape == (1, 6, 16)
    assert [float(layer.drop_path1.drop_prob) for layer in head.layers[1:]] == [pytest.approx(0.1)]
    out = head.eval()([torch.randn(2, 32, 3, 5)])
    assert out.shape == (2, 6, 3, 5)
    # mask_norm is a LayerNorm over the classes: zero mean, unit variance at initialisation.
    torch.testing.assert_close(out.mean(1), torch.zeros(2, 3, 5), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="num_heads"):
        SegmenterMaskHead(32, 6, num_heads=5, embed_dims=16)
