"""SemanticDifferenceConv2d and CentralDifferenceConv2d modules."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn import (
    CentralDifferenceConv2d,
    SemanticConv2d,
    SemanticDifferenceConv2d,
    _reference,
    sdc_backend,
)
from sdnseg.nn._reference import neighbour_similarity_reference, sc_reference, sdc_reference
from tests.reference import cdc_reference


def test_forward_matches_reference_and_resizes_guidance():
    torch.manual_seed(0)
    m = SemanticDifferenceConv2d(3, 4, kernel_size=3, dilation=2, lam=0.5).double()
    u = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    v_small = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    v = F.interpolate(v_small, size=(8, 10), mode="bilinear", align_corners=False)
    expected = sdc_reference(u, v, m.weight, m.bias, 2, "perona_malik", lam=m.lam)
    torch.testing.assert_close(m(u, v_small), expected, rtol=1e-10, atol=1e-10)


def test_sc_module_matches_reference_and_resizes_guidance():
    torch.manual_seed(0)
    m = SemanticConv2d(3, 4, kernel_size=3, dilation=2, lam=0.5).double()
    u = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    v_small = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    v = F.interpolate(v_small, size=(8, 10), mode="bilinear", align_corners=False)
    expected = sc_reference(u, v, m.weight, m.bias, 2, "perona_malik", lam=m.lam)
    torch.testing.assert_close(m(u, v_small), expected, rtol=1e-10, atol=1e-10)
    learnt = SemanticConv2d(2, 2, lam=0.3)
    learnt(torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)).square().sum().backward()
    assert learnt.raw_lam.grad is not None and learnt.raw_lam.grad != 0


def test_lam_is_positive_learnable_and_receives_gradient():
    m = SemanticDifferenceConv2d(2, 2, lam=0.3)
    assert m.lam.item() == pytest.approx(0.3, rel=1e-6)
    y = m(torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5))
    y.square().sum().backward()
    assert m.raw_lam.grad is not None and m.raw_lam.grad != 0
    with torch.no_grad():
        m.raw_lam.fill_(-50.0)
    assert m.lam.item() > 0


def test_fixed_lam_is_a_buffer():
    m = SemanticDifferenceConv2d(2, 2, lam=2.0, learn_lam=False)
    assert "raw_lam" not in dict(m.named_parameters())
    assert "raw_lam" in m.state_dict()
    assert m.lam.item() == pytest.approx(2.0, rel=1e-6)


def test_initialised_like_conv2d():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 3)
    torch.manual_seed(0)
    sdc = SemanticDifferenceConv2d(16, 8, 3)
    torch.testing.assert_close(sdc.weight, conv.weight)
    torch.testing.assert_close(sdc.bias, conv.bias)


def test_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        SemanticDifferenceConv2d(2, 2, kernel_size=4)
    with pytest.raises(ValueError, match="similarity"):
        SemanticDifferenceConv2d(2, 2, similarity="cosine")
    with pytest.raises(ValueError, match="lam"):
        SemanticDifferenceConv2d(2, 2, lam=0.0)


def test_cdc_module_matches_reference():
    torch.manual_seed(0)
    m = CentralDifferenceConv2d(3, 2, kernel_size=3, dilation=1, theta=0.7).double()
    u = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    expected = cdc_reference(u, m.weight, m.bias, 1, 0.7)
    torch.testing.assert_close(m(u), expected, rtol=1e-10, atol=1e-10)


def test_similarity_map_is_the_s_forward_uses():
    torch.manual_seed(0)
    m = SemanticDifferenceConv2d(3, 4, kernel_size=(3, 5), dilation=2, lam=0.6).double()
    u = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    v_small = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    v = F.interpolate(v_small, size=(8, 10), mode="bilinear", align_corners=False)
    s = m.similarity_map(u, v_small)
    expected = neighbour_similarity_reference(v, (3, 5), 2, "perona_malik", lam=m.lam)
    assert s.shape == (2, 14, 8, 10)
    torch.testing.assert_close(s, expected, rtol=1e-10, atol=1e-10)
    # forward is the difference convolution of exactly this S.
    y = _reference.difference_conv(u, s, m.weight, _reference.offsets((3, 5), 2))
    torch.testing.assert_close(m(u, v_small), y + m.bias.view(1, -1, 1, 1), rtol=1e-10, atol=1e-10)


def test_backend_argument_and_repr(monkeypatch):
    calls = []
    loop = _reference.difference_conv
    monkeypatch.setattr(_reference, "difference_conv", lambda *a: calls.append(1) or loop(*a))
    m = SemanticDifferenceConv2d(2, 3, backend="reference")
    assert "backend='reference'" in repr(m)
    m(torch.randn(1, 2, 4, 5), torch.randn(1, 3, 4, 5))
    cdc = CentralDifferenceConv2d(2, 3, backend="reference")
    assert "theta=0.7, backend='reference'" in repr(cdc)
    cdc(torch.randn(1, 2, 4, 5))
    assert len(calls) == 2
    default = SemanticDifferenceConv2d(2, 3)
    assert "backend=None (default: auto)" in repr(default)
    with sdc_backend("torch"):
        assert "backend=None (default: torch)" in repr(default)
    with pytest.raises(ValueError, match="backend must be one of"):
        SemanticDifferenceConv2d(2, 2, backend="gpu")
    with pytest.raises(ValueError, match="backend must be one of"):
        CentralDifferenceConv2d(2, 2, backend="gpu")
