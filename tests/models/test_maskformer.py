"""MaskFormer: the sine encoding and semantic inference against loops, the decoder layer against
``torch.nn.TransformerDecoderLayer``, the pixel decoder's layout, the logits contract, the
per-layer outputs, slide inference, SDN gradients and the paper-scale parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sdnseg.models import Backbone, create_model
from sdnseg.models.heads import MaskFormerHead, PixelDecoder, semantic_inference
from sdnseg.models.heads.maskformer import MaskFormerDecoderLayer, sine_position_encoding
from sdnseg.models.losses import MaskFormerLoss
from sdnseg.nn import MultiScaleSDN


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sine_encoding_matches_detr_formula():
    h, w, feats = 3, 5, 6
    pos = sine_position_encoding(torch.zeros(1, 1, h, w, dtype=torch.float64), feats)
    assert pos.shape == (2 * feats, h, w)
    for y in range(h):
        for x in range(w):
            for axis, (index, size) in enumerate(((y, h), (x, w))):
                value = (index + 1) / (size + 1e-6) * 2 * math.pi
                for i in range(feats):
                    angle = value / 10000 ** (2 * (i // 2) / feats)
                    expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                    assert pos[axis * feats + i, y, x].item() == pytest.approx(expected, abs=1e-12)


def test_semantic_inference_matches_a_loop():
    class_logits, mask_logits = torch.randn(2, 4, 4), torch.randn(2, 4, 3, 5)
    out = semantic_inference(class_logits, mask_logits)
    probs = class_logits.softmax(-1)
    for n in range(2):
        for c in range(3):
            expected = sum(probs[n, q, c] * mask_logits[n, q].sigmoid() for q in range(4))
            torch.testing.assert_close(out[n, c], expected)


def test_decoder_layer_without_positions_is_torch_s_post_norm_layer():
    torch.manual_seed(0)
    ours = MaskFormerDecoderLayer(16, 4, 32, dropout=0.0).eval()
    ref = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True).eval()
    ref.self_attn.load_state_dict(ours.self_attn.state_dict())
    ref.multihead_attn.load_state_dict(ours.cross_attn.state_dict())
    ref.linear1.load_state_dict(ours.ffn[0].state_dict())
    ref.linear2.load_state_dict(ours.ffn[3].state_dict())
    for i, norm in enumerate((ref.norm1, ref.norm2, ref.norm3)):
        norm.load_state_dict(ours.norms[i].state_dict())
    queries, memory = torch.randn(2, 5, 16), torch.randn(2, 12, 16)
    zeros_q, zeros_m = torch.zeros_like(queries), torch.zeros(1, 12, 16)
    torch.testing.assert_close(ours(queries, zeros_q, memory, zeros_m), ref(queries, memory))
    # positions enter queries and keys only: not the values
    query_pos = torch.randn_like(queries)
    moved = ours(queries, query_pos, memory, zeros_m)
    assert not torch.allclose(moved, ref(queries, memory))


def test_pixel_decoder_layout():
    decoder = PixelDecoder([24, 40, 112, 320], conv_dim=64, mask_dim=48, norm_groups=32)
    assert len(decoder.lateral_convs) == 3 and decoder.top_conv[0].in_channels == 320
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.bias is None for c in convs if c is not decoder.mask_features)
    assert sum(isinstance(m, nn.GroupNorm) and m.num_groups == 32 for m in decoder.modules()) == 7
    features = [torch.randn(1, c, 32 // 2**i, 40 // 2**i) for i, c in enumerate([24, 40, 112, 320])]
    assert decoder(features).shape == (1, 48, 32, 40)
    with pytest.raises(ValueError, match="expects 4 features"):
        decoder(features[:3])
    with pytest.raises(ValueError, match="multiple of norm_groups"):
        PixelDecoder([8, 16], conv_dim=40)


def _head() -> MaskFormerHead:
    torch.manual_seed(0)
    return MaskFormerHead([8, 16, 32], 5, conv_dim=32, mask_dim=16, hidden_dim=32,
                          num_queries=7, num_layers=3, num_heads=4, dim_feedforward=64)  # fmt: skip


def test_head_outputs_every_layer_and_inference_is_the_last():
    head = _head().eval()
    features = [torch.randn(2, c, 16 // 2**i, 24 // 2**i) for i, c in enumerate([8, 16, 32])]
    with torch.no_grad():
        logits, masks = head(features)
        fast, empty = head(features, with_masks=False)
    assert masks["class_logits"].shape == (3, 2, 7, 6)
    assert masks["mask_logits"].shape == (3, 2, 7, 16, 24) and empty == {}
    scores = semantic_inference(masks["class_logits"][-1], masks["mask_logits"][-1])
    torch.testing.assert_close(logits.exp(), scores)
    torch.testing.assert_close(fast, logits)
    # the logits contract: softmax is the scores normalised over classes, argmax is theirs
    torch.testing.assert_close(logits.softmax(1), scores / scores.sum(1, keepdim=True))
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MaskFormerHead([8], 3, hidden_dim=30, num_heads=4)


def test_segmentor_crops_mask_logits_to_the_image_and_trains():
    model = create_model("maskformer_efflite0", 3).train()
    images = torch.randn(2, 3, 70, 100)  # padded to 96×128: masks 24×32, the image covers 18×25
    outputs = model.forward_train(images)
    assert outputs.logits.shape == (2, 3, 70, 100) and not model.has_aux
    assert outputs.aux["class_logits"].shape == (6, 2, 100, 4)
    assert outputs.aux["mask_logits"].shape == (6, 2, 100, 18, 25)
    loss = MaskFormerLoss()(outputs, torch.randint(0, 3, (2, 70, 100)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.mark.parametrize("name", ["maskformer_efflite0_sdn", "maskformer_efflite2_sdn"])
def test_gradient_reaches_the_sdn_parameters(name):
    model = create_model(name, 3).train()
    assert isinstance(model.neck, MultiScaleSDN)
    loss = MaskFormerLoss()(
        model.forward_train(torch.randn(2, 3, 64, 64)), torch.randint(0, 3, (2, 64, 64))
    )
    loss.backward()
    for key, param in model.neck.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), key
    assert any(p.grad.abs().sum() > 0 for p in model.neck.parameters())


def test_slide_inference_averages_tiles_of_whole_forwards():
    model = create_model("maskformer_efflite0", 3).eval()
    images = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        tiles = torch.cat([model(images[..., :64]), model(images[..., 64:])], dim=-1)
        slide = model.inference(images, mode="slide", crop_size=64, stride=64, output="logits")
        torch.testing.assert_close(slide, tiles)
        whole = model.inference(images)
    torch.testing.assert_close(whole.sum(1), torch.ones(1, 64, 128))


def test_swin_backbone_gives_channels_first_features():
    backbone = Backbone("swin_tiny_patch4_window7_224", (0, 1, 2, 3), strict_img_size=False)
    assert backbone.channels_last and backbone.reductions == [4, 8, 16, 32]
    features = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (1, c, 64 // r, 96 // r)
        for c, r in zip(backbone.channels, backbone.reductions, strict=True)
    ]
    assert not Backbone("resnet10t").channels_last


@pytest.mark.parametrize(
    ("name", "millions"), [("maskformer_r101", 60), ("maskformer_swin_b", 102)]
)
def test_paper_scale_parameter_counts(name, millions):
    """MaskFormer's Table 1 (semantic, ADE20K): R101 60M, Swin-B 102M parameters."""
    model = create_model(name, 150)
    assert _params(model) / 1e6 == pytest.approx(millions, rel=0.03)
    head = model.head
    assert head.query_embed.weight.shape == (100, 256) and len(head.layers) == 6
    assert head.layers[0].ffn[0].out_features == 2048 and head.layers[0].self_attn.num_heads == 8
    assert head.class_embed.out_features == 151


def test_flop_counter_runs_the_no_grad_forward():
    # benchmarks/model_cost.py counts FLOPs under no_grad with module hooks; an expanded view of
    # the query embedding made there has requires_grad without a grad_fn, which the hooks reject.
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("maskformer_efflite0", 5, pretrained=False).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 64, 64))
    assert counter.get_total_flops() > 0
