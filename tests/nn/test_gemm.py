"""The three-GEMM path of the SDC (Eq. 5) against the float64 loop reference, chunk by chunk."""

import pytest
import torch

from sdnseg.nn import _gemm, _tap_stacks
from sdnseg.nn import functional as SF
from sdnseg.nn._reference import (
    difference_conv,
    neighbour_squared_distance,
    offsets,
    sc_reference,
    sdc_reference,
)

F64 = torch.float64


@pytest.fixture(params=[None, 1, 7, 40], ids=["auto", "1px", "7px", "40px"])
def chunk_pixels(request, monkeypatch):
    """Chunks of 1 and 7 pixels are bands of one row; 40 pixels are whole 5x6 images."""
    monkeypatch.setattr(_tap_stacks, "chunk_pixels_override", request.param)
    return request.param


def _inputs(seed=0, dtype=F64, n=2, ci=3, co=4, cf=5, h=5, w=6, k=3):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, ci, h, w, generator=g, dtype=dtype)
    v = torch.randn(n, cf, h, w, generator=g, dtype=dtype)
    weight = torch.randn(co, ci, k, k, generator=g, dtype=dtype)
    bias = torch.randn(co, generator=g, dtype=dtype)
    return u, v, weight, bias


def test_kernel_offsets_skip_the_centre():
    assert _tap_stacks.kernel_offsets((3, 3), 2) == [
        (-2, -2),
        (-2, 0),
        (-2, 2),
        (0, -2),
        (0, 2),
        (2, -2),
        (2, 0),
        (2, 2),
    ]
    assert len(_tap_stacks.kernel_offsets((5, 3), 1)) == 14
    assert _tap_stacks.kernel_offsets((3, 5), 1) == offsets((3, 5), 1)


def test_chunks_cover_every_pixel_once():
    for n, h, w, pixels in [(2, 5, 6, 1), (2, 5, 6, 7), (3, 5, 6, 40), (1, 9, 4, 13), (4, 2, 2, 9)]:
        seen = torch.zeros(n, h, w, dtype=torch.int64)
        for c in _tap_stacks.chunks(n, h, w, pixels):
            seen[c.n0 : c.n1, c.y0 : c.y1] += 1
        assert bool((seen == 1).all()), (n, h, w, pixels)


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("k", [3, 5])
def test_forward_equals_the_reference(chunk_pixels, k, dilation):
    u, v, weight, bias = _inputs(k=k)
    offs = _tap_stacks.kernel_offsets((k, k), dilation)
    y = _gemm.semantic_difference_conv(u, v, weight, bias, offs, SF.perona_malik, 0.7)
    expected = sdc_reference(u, v, weight, bias, dilation, "perona_malik", lam=0.7)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    d2 = _gemm.neighbour_squared_distance(v, offs)
    torch.testing.assert_close(d2, neighbour_squared_distance(v, offs), rtol=1e-12, atol=1e-12)
    s = torch.rand(2, len(offs), 5, 6, dtype=F64)
    torch.testing.assert_close(
        _gemm.difference_conv(u, s, weight, offs),
        difference_conv(u, s, weight, offs),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("mode", ["perona_malik", "callable", "ones", "given"])
def test_gradcheck_every_input(chunk_pixels, mode):
    u, v, weight, bias = (t.requires_grad_(True) for t in _inputs(n=2, ci=2, co=3, cf=2, h=5, w=6))
    lam = torch.tensor(0.8, dtype=F64, requires_grad=True)
    offs = _tap_stacks.kernel_offsets((3, 3), 2)
    if mode == "given":
        s = torch.rand(2, 8, 5, 6, dtype=F64, requires_grad=True)
        inputs, fn = (u, s, weight), lambda u, s, w: _gemm.difference_conv(u, s, w, offs)
    elif mode == "ones":
        inputs = (u, weight, bias)
        fn = lambda u, w, b: _gemm.semantic_difference_conv(u, None, w, b, offs, None, 1.0)  # noqa: E731
    else:
        sim = SF.perona_malik if mode == "perona_malik" else lambda d2, lam: torch.sigmoid(d2 - lam)
        inputs = (u, v, weight, bias, lam)
        fn = lambda u, v, w, b, lam: _gemm.semantic_difference_conv(u, v, w, b, offs, sim, lam)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    d2_fn = lambda v: _gemm.neighbour_squared_distance(v, offs)  # noqa: E731
    assert torch.autograd.gradcheck(d2_fn, (v,))


def test_gradients_equal_the_reference_autograd_on_a_larger_case():
    u, v, weight, bias = (t.requires_grad_(True) for t in _inputs(ci=16, co=8, cf=4, h=9, w=11))
    gy = torch.randn(2, 8, 9, 11, dtype=F64)
    y = SF.semantic_difference_conv2d(u, v, weight, bias, 2, backend="torch")
    ref = sdc_reference(u, v, weight, bias, 2)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    leaves = (u, v, weight, bias)
    for got, want in zip(
        torch.autograd.grad((y * gy).sum(), leaves),
        torch.autograd.grad((ref * gy).sum(), leaves),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


def test_centre_tap_gets_zero_gradient():
    u, v, weight, _ = (t.requires_grad_(True) for t in _inputs())
    SF.semantic_difference_conv2d(u, v, weight, backend="torch").sum().backward()
    assert bool((weight.grad[:, :, 1, 1] == 0).all())
    assert bool((weight.grad[:, :, 0, 0] != 0).any())


def test_saved_for_backward_is_the_inputs_and_d2():
    u = torch.randn(1, 8, 6, 6, requires_grad=True)
    v = torch.randn(1, 4, 6, 6, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        SF.semantic_difference_conv2d(u, v, w, backend="torch")
    d2_numel = 8 * 6 * 6  # (N, K, H, W); a (N, K*C, H, W) stack would be 8x u
    assert sum(saved.values()) == u.numel() + v.numel() + w.numel() + d2_numel


def test_channels_last_input_gives_channels_last_output_and_equal_values():
    u, v, weight, bias = _inputs(dtype=torch.float32, ci=8, co=6)
    y = SF.semantic_difference_conv2d(u, v, weight, bias, backend="torch")
    u_cl = u.to(memory_format=torch.channels_last).requires_grad_(True)
    v_cl = v.to(memory_format=torch.channels_last)
    y_cl = SF.semantic_difference_conv2d(u_cl, v_cl, weight, bias, backend="torch")
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-5)
    y_cl.sum().backward()
    assert u_cl.grad.shape == u.shape


def test_float32_within_rounding_of_float64():
    u, v, weight, bias = _inputs(ci=32, co=16, h=12, w=10)
    expected = sdc_reference(u, v, weight, bias, 1)
    y = SF.semantic_difference_conv2d(
        u.float(), v.float(), weight.float(), bias.float(), backend="torch"
    )
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_within_its_stated_bound_of_float32():
    """bf16 inputs are computed in fp32 and rounded once: the error is bf16's rounding of the
    inputs and the output, ~2^-8 relative; stated bound: 3e-2 of the output's scale."""
    u, v, weight, bias = _inputs(dtype=torch.float32, ci=32, co=16, h=12, w=10)
    bf = [t.bfloat16() for t in (u, v, weight, bias)]
    y = SF.semantic_difference_conv2d(*bf, backend="torch")
    assert y.dtype == torch.bfloat16
    expected = SF.semantic_difference_conv2d(*(t.float() for t in bf), backend="torch")
    scale = expected.abs().max()
    assert float((y.float() - expected).abs().max() / scale) < 3e-2


def test_a_similarity_of_the_wrong_shape_is_an_error():
    u, v, weight, _ = _inputs()
    offs = _tap_stacks.kernel_offsets((3, 3), 1)
    with pytest.raises(ValueError, match=r"similarity callable must return the shape of d2"):
        _gemm.semantic_difference_conv(u, v, weight, None, offs, lambda d2, lam: d2[:, :1], 1.0)


# --- the similarity-weighted convolution without the difference ("sc"), the same autograd function


@pytest.mark.parametrize("dilation", [1, 2, 4])
@pytest.mark.parametrize("k", [3, 5])
def test_sc_forward_equals_the_reference(chunk_pixels, k, dilation):
    u, v, weight, bias = _inputs(k=k)
    offs = _tap_stacks.kernel_offsets((k, k), dilation, centre=True)
    y = _gemm.semantic_conv(u, v, weight, bias, offs, SF.perona_malik, 0.7)
    expected = sc_reference(u, v, weight, bias, dilation, "perona_malik", lam=0.7)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["perona_malik", "callable", "ones"])
def test_sc_gradcheck_every_input(chunk_pixels, mode):
    u, v, weight, bias = (t.requires_grad_(True) for t in _inputs(n=2, ci=2, co=3, cf=2, h=5, w=6))
    lam = torch.tensor(0.8, dtype=F64, requires_grad=True)
    offs = _tap_stacks.kernel_offsets((3, 3), 2, centre=True)
    if mode == "ones":
        inputs = (u, weight, bias)
        fn = lambda u, w, b: _gemm.semantic_conv(u, None, w, b, offs, None, 1.0)  # noqa: E731
    else:
        sim = SF.perona_malik if mode == "perona_malik" else lambda d2, lam: torch.sigmoid(d2 - lam)
        inputs = (u, v, weight, bias, lam)
        fn = lambda u, v, w, b, lam: _gemm.semantic_conv(u, v, w, b, offs, sim, lam)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)


def test_sc_gradients_equal_the_reference_autograd_and_reach_the_centre_tap():
    u, v, weight, bias = (t.requires_grad_(True) for t in _inputs(ci=16, co=8, cf=4, h=9, w=11))
    gy = torch.randn(2, 8, 9, 11, dtype=F64)
    y = SF.semantic_conv2d(u, v, weight, bias, 2, backend="torch")
    ref = sc_reference(u, v, weight, bias, 2)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    leaves = (u, v, weight, bias)
    got = torch.autograd.grad((y * gy).sum(), leaves)
    for g, want in zip(got, torch.autograd.grad((ref * gy).sum(), leaves), strict=True):
        torch.testing.assert_close(g, want, rtol=1e-11, atol=1e-11)
    assert bool((got[2][:, :, 1, 1] != 0).all())  # the centre multiplies U_m, not U_m - U_m


def test_sc_saves_the_inputs_and_d2_over_every_tap():
    u = torch.randn(1, 8, 6, 6, requires_grad=True)
    v = torch.randn(1, 4, 6, 6, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        SF.semantic_conv2d(u, v, w, backend="torch")
    d2_numel = 9 * 6 * 6  # (N, kh·kw, H, W), the centre's zero distance included
    assert sum(saved.values()) == u.numel() + v.numel() + w.numel() + d2_numel


def test_sc_channels_last_input_gives_channels_last_output_and_equal_values():
    u, v, weight, bias = _inputs(dtype=torch.float32, ci=8, co=6)
    y = SF.semantic_conv2d(u, v, weight, bias, backend="torch")
    u_cl = u.to(memory_format=torch.channels_last).requires_grad_(True)
    v_cl = v.to(memory_format=torch.channels_last)
    y_cl = SF.semantic_conv2d(u_cl, v_cl, weight, bias, backend="torch")
    assert y_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-5)
    y_cl.sum().backward()
    assert u_cl.grad.shape == u.shape
