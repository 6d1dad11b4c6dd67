"""The Triton element-wise kernels of the three-GEMM SDC path: ``sdnseg.nn._triton_elementwise``.

Each kernel is checked against the PyTorch element-wise op it replaces
(:class:`sdnseg.nn._tap_stacks.TorchElementwise`), chunk by chunk, on both memory layouts, with
and without the difference and with offsets reaching outside the image; then the whole GEMM
path with the Triton ops against the float64 loop references of :mod:`sdnseg.nn._reference`
(written independently of both) and by gradcheck in float64.

Without a GPU the kernels run under Triton's interpreter on CPU tensors (which runs float64
too). As in ``test_triton.py``: the interpreter is chosen when the kernel module is imported, so
this module sets ``TRITON_INTERPRET`` before anything imports it, the fixture re-imports the
kernels if they were imported compiled, and the variable is restored afterwards.
"""

from __future__ import annotations

import os

import torch  # does not import triton

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

pytest.importorskip("triton")

from sdnseg.nn import _dispatch, _gemm, _triton_elementwise  # noqa: E402
from sdnseg.nn import _tap_stacks as ts  # noqa: E402
from sdnseg.nn import functional as SF  # noqa: E402
from sdnseg.nn._reference import (  # noqa: E402
    difference_conv,
    neighbour_squared_distance,
    sc_reference,
    sdc_reference,
)

F64 = torch.float64
TORCH_OPS = ts.TorchElementwise()
TRITON_OPS = _triton_elementwise.TritonElementwise()
# (kernel, dilation): offsets two pixels out on a 5x6 image, and a 5x5 kernel.
KERNELS = {"3x3d2": ((3, 3), 2), "5x5": ((5, 5), 1)}
LAYOUTS = {
    "nchw": torch.contiguous_format,
    "channels_last": torch.channels_last,
}


@pytest.fixture(scope="module", autouse=True)
def device():
    """The device of the test tensors; makes sure the kernels are interpreted on a CPU box."""
    if torch.cuda.is_available() and not _triton_elementwise.kernels_interpreted():
        yield torch.device("cuda")
        return
    os.environ["TRITON_INTERPRET"] = "1"
    if not _triton_elementwise.kernels_interpreted():
        _triton_elementwise.reload_kernels()  # imported compiled before this module set it
    assert _triton_elementwise.kernels_interpreted()
    yield torch.device("cpu")
    if _PREVIOUS_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET


def _rand(*shape, device, layout=torch.contiguous_format, seed=0, fn=torch.randn):
    x = fn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x.to(device).contiguous(memory_format=layout) if len(shape) == 4 else x.to(device)


def _offsets(kernel: str, difference: bool = True):
    size, dilation = KERNELS[kernel]
    return ts.kernel_offsets(size, dilation, centre=not difference)


def _chunks(n, h, w):
    """Bands of two rows of the first image (the last one shorter), and all images in one chunk,
    as the GEMM path makes them (together they cover every pixel)."""
    return ts.chunks(1, h, w, 2 * w) + ts.chunks(n, h, w, n * h * w)


def _stack(k, ch, c, w, device, fill=0.0):
    return torch.full((k, ch, c.n1 - c.n0, c.y1 - c.y0, w), fill, dtype=F64, device=device)


# ----------------------------------------------------------------------------------------------
# each kernel against the PyTorch op it replaces


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("difference", [True, False], ids=["sdc", "sc"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_tap_stack_equals_the_torch_ops(device, kernel, difference, layout):
    n, ch, h, w = 2, 3, 5, 6
    offs = _offsets(kernel, difference)
    x = _rand(n, ch, h, w, device=device, layout=LAYOUTS[layout])
    s = _rand(n, len(offs), h, w, device=device, seed=1, fn=torch.rand)
    for c in _chunks(n, h, w):
        for s_c in (s, None):
            want = TORCH_OPS.tap_stack(
                x, s_c, c, offs, _stack(len(offs), ch, c, w, device), difference
            )
            # NaN fill: every element, the zeros at the borders included, must be written.
            nan = _stack(len(offs), ch, c, w, device, fill=float("nan"))
            got = TRITON_OPS.tap_stack(x, s_c, c, offs, nan, difference)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert bool((want == 0).any()), "some neighbours must be outside"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("difference", [True, False], ids=["sdc", "sc"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_grad_similarity_equals_the_torch_ops(device, kernel, difference, layout):
    n, ch, h, w = 2, 20, 5, 6  # two channel blocks of the reduction
    offs = _offsets(kernel, difference)
    u = _rand(n, ch, h, w, device=device, layout=LAYOUTS[layout])
    want = torch.full((n, len(offs), h, w), float("nan"), dtype=F64, device=device)
    got = want.clone()
    for i, c in enumerate(_chunks(n, h, w)):
        gk = _rand(len(offs), ch, c.n1 - c.n0, c.y1 - c.y0, w, device=device, seed=2 + i)
        stack = TORCH_OPS.tap_stack(
            u, None, c, offs, _stack(len(offs), ch, c, w, device), difference
        )
        TORCH_OPS.grad_similarity(u, gk.clone(), c, offs, stack, ts.part(want, c), difference)
        TRITON_OPS.grad_similarity(u, gk, c, offs, None, ts.part(got, c), difference)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("difference", [True, False], ids=["sdc", "sc"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_grad_input_gathers_what_the_torch_ops_scatter(device, kernel, difference, layout):
    n, ch, h, w = 2, 3, 5, 6
    offs = _offsets(kernel, difference)
    s = _rand(n, len(offs), h, w, device=device, seed=1, fn=torch.rand)
    for s_c in (s, None):
        # Accumulates into what is there, chunk after chunk (bands reach into their neighbours).
        want = _rand(n, ch, h, w, device=device, layout=LAYOUTS[layout], seed=3)
        got = want.clone()
        s_torch = TORCH_OPS.adjoint_similarity(s_c, offs, n, h, w, want)
        s_triton = TRITON_OPS.adjoint_similarity(s_c, offs, n, h, w, got)
        for i, c in enumerate(ts.chunks(n, h, w, 2 * w)):
            gk = _rand(len(offs), ch, c.n1 - c.n0, c.y1 - c.y0, w, device=device, seed=4 + i)
            TORCH_OPS.grad_input(want, gk.clone(), s_torch, c, offs, difference)
            TRITON_OPS.grad_input(got, gk, s_triton, c, offs, difference)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        assert got.stride() == want.stride()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_squared_distances_and_gradient_equal_the_torch_ops(device, kernel, layout):
    n, cf, h, w = 2, 20, 5, 6
    offs = _offsets(kernel)
    v = _rand(n, cf, h, w, device=device, layout=LAYOUTS[layout])
    d2 = TRITON_OPS.squared_distances(v, offs)
    torch.testing.assert_close(d2, TORCH_OPS.squared_distances(v, offs), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d2, neighbour_squared_distance(v, offs), rtol=1e-12, atol=1e-12)
    grad_d2 = _rand(n, len(offs), h, w, device=device, seed=5)
    got = TRITON_OPS.squared_distances_backward(v, grad_d2, offs)
    want = TORCH_OPS.squared_distances_backward(v, grad_d2, offs)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert got.stride() == v.stride()


# ----------------------------------------------------------------------------------------------
# the whole GEMM path with the Triton element-wise ops


def _operator(name: str, offs):
    """(function of the float tensors, reference function) for one operator of the GEMM path."""
    if name == "sdc":
        return (
            lambda u, v, w, b: _gemm.semantic_difference_conv(
                u, v, w, b, offs, SF.perona_malik, 0.7, elementwise="triton"
            ),
            lambda u, v, w, b: sdc_reference(u, v, w, b, 2, "perona_malik", 0.7),
        )
    if name == "sc":
        return (
            lambda u, v, w, b: _gemm.semantic_conv(
                u, v, w, b, offs, SF.perona_malik, 0.7, elementwise="triton"
            ),
            lambda u, v, w, b: sc_reference(u, v, w, b, 2, "perona_malik", 0.7),
        )
    # S given (the guidance input is S itself).
    return (
        lambda u, s, w: _gemm.difference_conv(u, s, w, offs, elementwise="triton"),
        lambda u, s, w: difference_conv(u, s, w, offs),
    )


@pytest.mark.parametrize("chunk_pixels", [None, 10], ids=["one_chunk", "bands"])
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("operator", ["sdc", "sc", "given"])
def test_gemm_path_equals_the_reference(device, monkeypatch, operator, dtype, chunk_pixels):
    monkeypatch.setattr(ts, "chunk_pixels_override", chunk_pixels)
    n, ci, co, cf, h, w = 2, 3, 4, 5, 4, 5
    offs = ts.kernel_offsets((3, 3), 2, centre=operator == "sc")
    u = _rand(n, ci, h, w, device=device, layout=torch.channels_last)
    guide = _rand(n, cf, h, w, device=device, seed=1)
    weight = _rand(co, ci, 3, 3, device=device, seed=2) / 3
    inputs = [u, guide, weight, _rand(co, device=device, seed=3)]
    if operator == "given":
        inputs = [u, _rand(n, len(offs), h, w, device=device, seed=4, fn=torch.rand), weight]
    fn, ref_fn = _operator(operator, offs)
    grad_y = _rand(n, co, h, w, device=device, seed=5)
    leaves = [x.to(dtype).requires_grad_() for x in inputs]
    y = fn(*leaves)
    ref_leaves = [x.to(dtype).double().requires_grad_() for x in inputs]
    ref = ref_fn(*ref_leaves)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-10}
    assert y.dtype == dtype and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.double(), ref, **tol)
    got = torch.autograd.grad(y, leaves, grad_y.to(dtype))
    want = torch.autograd.grad(ref, ref_leaves, grad_y)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), r, **tol)


@pytest.mark.parametrize("wanted", [(0,), (1,), (2,), (1, 3)], ids=["u", "v", "w", "v_bias"])
def test_gemm_path_gradients_of_some_inputs(device, monkeypatch, wanted):
    """Only some gradients asked for: backward skips the rest (dS without dW builds no stack)."""
    monkeypatch.setattr(ts, "chunk_pixels_override", 10)
    n, ci, co, cf, h, w = 2, 3, 4, 5, 4, 5
    offs = ts.kernel_offsets((3, 3), 2)
    inputs = [
        _rand(n, ci, h, w, device=device),
        _rand(n, cf, h, w, device=device, seed=1),
        _rand(co, ci, 3, 3, device=device, seed=2),
        _rand(co, device=device, seed=3),
    ]
    fn, ref_fn = _operator("sdc", offs)
    leaves = [x.clone().requires_grad_(i in wanted) for i, x in enumerate(inputs)]
    ref_leaves = [x.clone().requires_grad_(i in wanted) for i, x in enumerate(inputs)]
    grad_y = _rand(n, co, h, w, device=device, seed=5)
    got = torch.autograd.grad(fn(*leaves), [leaves[i] for i in wanted], grad_y)
    want = torch.autograd.grad(ref_fn(*ref_leaves), [ref_leaves[i] for i in wanted], grad_y)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("operator", ["sdc", "sc", "given"])
def test_gemm_path_gradcheck_float64(device, monkeypatch, operator):
    monkeypatch.setattr(ts, "chunk_pixels_override", 8)  # two-row bands of a 4x4 image
    n, ci, co, cf, h, w = 1, 2, 2, 2, 4, 4
    offs = ts.kernel_offsets((3, 3), 2, centre=operator == "sc")
    inputs = [
        _rand(n, ci, h, w, device=device),
        _rand(n, cf, h, w, device=device, seed=1),
        _rand(co, ci, 3, 3, device=device, seed=2),
        _rand(co, device=device, seed=3),
    ]
    if operator == "given":
        inputs = [inputs[0], _rand(n, len(offs), h, w, device=device, fn=torch.rand), inputs[2]]
    fn, _ = _operator(operator, offs)
    leaves = [x.requires_grad_() for x in inputs]
    assert torch.autograd.gradcheck(fn, leaves, fast_mode=True)
    d2 = lambda v: _gemm.neighbour_squared_distance(v, offs, elementwise="triton")  # noqa: E731
    assert torch.autograd.gradcheck(d2, (leaves[1],), fast_mode=True)


def test_functional_ops_run_the_elementwise_ops_the_route_names(device, monkeypatch):
    """functional.py hands ``Route.elementwise`` to the GEMM path (on CUDA, ``backend="torch"``
    picks ``"triton"``; here the route is forced, since CPU tensors never get it)."""
    calls = []
    tap_stack = _triton_elementwise.TritonElementwise.tap_stack

    def spy(self, *args, **kwargs):
        calls.append(1)
        return tap_stack(self, *args, **kwargs)

    monkeypatch.setattr(_triton_elementwise.TritonElementwise, "tap_stack", spy)
    monkeypatch.setattr(SF, "choose_route", lambda *a: _dispatch.Route("torch", "triton"))
    u, v = _rand(1, 2, 4, 5, device=device), _rand(1, 3, 4, 5, device=device, seed=1)
    weight = _rand(3, 2, 3, 3, device=device, seed=2)
    for op, ref in (
        (SF.semantic_difference_conv2d, sdc_reference),
        (SF.semantic_conv2d, sc_reference),
    ):
        before = len(calls)
        torch.testing.assert_close(op(u, v, weight, None, 2), ref(u, v, weight, None, 2))
        assert len(calls) > before, op.__name__
    before = len(calls)
    SF.central_difference_conv2d(u, weight, theta=0.7)
    assert len(calls) > before
