"""The fast path's element-wise kernels: eager and torch.compile'd forms agree with the reference."""

import pytest
import torch

from sdnseg.nn import _autograd
from sdnseg.nn import functional as SF
from sdnseg.nn._reference import sdc_reference


def test_kernel_offsets_skip_the_centre():
    assert _autograd.kernel_offsets((3, 3), 2) == [
        (-2, -2),
        (-2, 0),
        (-2, 2),
        (0, -2),
        (0, 2),
        (2, -2),
        (2, 0),
        (2, 2),
    ]
    assert len(_autograd.kernel_offsets((5, 3), 1)) == 14


def test_saved_tensors_are_inputs_and_similarity_sized():
    u = torch.randn(1, 8, 6, 6, requires_grad=True)
    v = torch.randn(1, 4, 6, 6, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        SF.semantic_difference_conv2d(u, v, w)
    similarity_sized = 8 * 6 * 6  # (N, K, H, W)
    # u, v, w plus a few (N, K, H, W) tensors; a (N, K*C, H, W) stack would be 8x u.
    assert sum(saved.values()) <= u.numel() + v.numel() + w.numel() + 4 * similarity_sized


@pytest.mark.slow
@pytest.mark.parametrize(("ci", "co"), [(6, 4), (3, 5), (8, 3)])
def test_compiled_kernels_match_reference(monkeypatch, ci, co):
    # Compilation costs tens of seconds per kernel, hence slow; CI covers the eager form.
    monkeypatch.setattr(_autograd, "_compiled", {})
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, ci, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(co, ci, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(2, co, 7, 9, generator=g, dtype=torch.float64)
    with SF.sdc_backend("torch", compile=True):
        fast = SF.semantic_difference_conv2d(u, v, w, dilation=2)
        ref = sdc_reference(u, v, w, dilation=2)
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
        grads = torch.autograd.grad((fast * gy).sum(), (u, v, w))
    assert _autograd._compiled  # the kernels did go through torch.compile
    ref_grads = torch.autograd.grad((ref * gy).sum(), (u, v, w))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
