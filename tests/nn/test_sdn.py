"""The SDN module and the single-/multi-scale and concatenated-feature SDN necks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn import (
    SDN,
    CentralDifferenceConv2d,
    ConcatSDN,
    MultiScaleSDN,
    SemanticConv2d,
    SemanticDifferenceConv2d,
    SingleScaleSDN,
)
from sdnseg.nn.sdn import resize_concat


@pytest.mark.parametrize("operator", ["sdc", "conv", "cdc", "sc"])
@pytest.mark.parametrize("sdc_channels", [None, 8])
def test_sdn_keeps_shape_and_backpropagates(operator, sdc_channels):
    m = SDN(16, sdc_channels, operator=operator, kernel_size=3, dilation=2)
    u = torch.randn(2, 16, 9, 11, requires_grad=True)
    v = torch.randn(2, 5, 5, 6, requires_grad=True)
    y = m(u, v)
    assert y.shape == u.shape
    y.sum().backward()
    assert u.grad is not None
    assert (v.grad is not None) == (operator in ("sdc", "sc"))


def test_sdn_operator_types():
    assert isinstance(SDN(8, operator="sdc").op, SemanticDifferenceConv2d)
    assert isinstance(SDN(8, operator="cdc").op, CentralDifferenceConv2d)
    assert type(SDN(8, operator="sc").op) is SemanticConv2d
    conv = SDN(8, operator="conv", kernel_size=5, dilation=3).op
    assert type(conv) is nn.Conv2d and conv.padding == (6, 6)
    with pytest.raises(ValueError, match="operator must be one of"):
        SDN(8, operator="lsa")


def test_sdn_paper_form_fuses_u_and_y_of_equal_width():
    m = SDN(12)
    assert isinstance(m.reduce, nn.Identity)
    assert m.fuse[0].in_channels == 24 and m.fuse[0].out_channels == 12
    reduced = SDN(12, sdc_channels=4)
    assert reduced.fuse[0].in_channels == 16 and reduced.op.in_channels == 4


def test_single_scale_neck_changes_only_the_last_feature():
    neck = SingleScaleSDN([4, 8, 16], guidance_channels=6, sdc_channels=8).eval()
    feats = [torch.randn(1, c, s, s) for c, s in [(4, 16), (8, 8), (16, 7)]]
    out = neck(feats)
    assert [o.shape for o in out] == [f.shape for f in feats]
    assert out[0] is feats[0] and out[1] is feats[1]
    assert neck.guidance[0].stride == (2, 2) and neck.guidance[0].kernel_size == (3, 3)


def test_multi_scale_neck_is_guided_by_the_next_raw_feature():
    torch.manual_seed(0)
    neck = MultiScaleSDN([4, 8, 16], guidance_channels=6).eval()
    feats = [torch.randn(1, c, s, s) for c, s in [(4, 16), (8, 8), (16, 4)]]
    out = neck(feats)
    assert [o.shape for o in out] == [f.shape for f in feats]
    # Stage 0 sees only F_0 and its guide F_1: changing F_2 leaves it unchanged (no chaining).
    changed = [feats[0], feats[1], torch.randn_like(feats[2])]
    torch.testing.assert_close(neck(changed)[0], out[0])
    assert not torch.allclose(neck(changed)[1], out[1])
    # Weights are not shared between stages.
    assert len({id(s.op.weight) for s in neck.sdns}) == 3


def test_multi_scale_neck_caps_sdc_channels_per_stage():
    neck = MultiScaleSDN([4, 8, 16], sdc_channels=8)
    assert [s.op.in_channels for s in neck.sdns] == [4, 8, 8]
    with pytest.raises(ValueError, match="3 stages"):
        MultiScaleSDN([4, 8, 16], sdc_channels=[2, 2])


def test_sc_sdn_trains_a_step_and_its_output_follows_the_guidance():
    torch.manual_seed(0)
    m = SDN(8, operator="sc", kernel_size=3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    u, v = torch.randn(2, 8, 9, 11), torch.randn(2, 5, 9, 11)
    before = m.op.weight.detach().clone()
    loss = m(u, v).square().mean()
    loss.backward()
    assert m.op.raw_lam.grad is not None and m.op.weight.grad[:, :, 1, 1].abs().sum() > 0
    opt.step()
    assert not torch.equal(m.op.weight, before)
    m.eval()
    assert not torch.allclose(m(u, v), m(u, torch.randn_like(v)))


@pytest.mark.parametrize("operator", ["sdc", "cdc", "sc"])
def test_sdn_passes_the_backend_to_its_operator(operator):
    assert SDN(8, operator=operator, backend="reference").op.backend == "reference"
    assert SDN(8, operator=operator).op.backend is None


def test_resize_concat_is_bilinear_resize_then_cat():
    feats = [torch.randn(2, c, s, s + 2) for c, s in [(3, 9), (4, 5), (5, 3)]]
    expected = torch.cat(
        [feats[0]]
        + [F.interpolate(f, size=(9, 11), mode="bilinear", align_corners=False) for f in feats[1:]],
        dim=1,
    )
    torch.testing.assert_close(resize_concat(feats), expected)
    assert resize_concat(feats[:1]) is feats[0]
    with pytest.raises(ValueError, match="at least one"):
        resize_concat([])


def test_concat_neck_is_the_single_scale_sdn_on_the_concatenation():
    torch.manual_seed(0)
    neck = ConcatSDN([4, 8], guidance_channels=6, sdc_channels=5).eval()
    feats = [torch.randn(1, 4, 12, 10), torch.randn(1, 8, 6, 5)]
    (out,) = neck(feats)
    assert out.shape == (1, 12, 12, 10)
    assert isinstance(neck.sdn, SingleScaleSDN) and neck.sdn.guidance[0].in_channels == 12
    torch.testing.assert_close(out, neck.sdn([resize_concat(feats)])[0])
    with pytest.raises(ValueError, match=r"\[4, 8\] channels, got \[4, 4\]"):
        neck([feats[0], feats[0]])
