"""The Triton path of the semantic difference convolution (Eq. 5): ``sdnseg.nn._triton``.

Every result is checked against the float64 loop reference of :mod:`sdnseg.nn._reference`
(``backend="reference"``, written independently of both fast paths) and against the PyTorch
three-GEMM path of :mod:`sdnseg.nn._gemm`.

Without a GPU the kernels run under Triton's interpreter on CPU tensors. Triton decides between
compiling and interpreting when ``@triton.jit`` decorates a kernel, i.e. when
``sdnseg.nn._triton_kernels`` is imported, by reading ``TRITON_INTERPRET`` (through
``triton.knobs.runtime.interpret``). So this module sets the variable before anything imports
the kernels, and the module fixture re-imports them if another test imported them compiled
first; it restores the variable afterwards. The interpreted kernels need no variable at launch.
With a GPU the compiled kernels run on CUDA tensors instead and the variable is left alone.
"""

from __future__ import annotations

import os

import torch  # does not import triton

_PREVIOUS_INTERPRET = os.environ.get("TRITON_INTERPRET")
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import importlib.util  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("triton")

from sdnseg.nn import _triton  # noqa: E402
from sdnseg.nn import functional as SF  # noqa: E402
from sdnseg.nn._gemm import difference_conv, neighbour_squared_distance  # noqa: E402
from sdnseg.nn._reference import difference_conv as ref_dc  # noqa: E402
from sdnseg.nn._reference import neighbour_squared_distance as ref_d2  # noqa: E402
from sdnseg.nn._reference import offsets as ref_offsets  # noqa: E402
from sdnseg.nn._reference import sdc_reference, shifted_and_inside  # noqa: E402
from sdnseg.nn._tap_stacks import kernel_offsets  # noqa: E402

# (N, Ci, Co, H, W, (kh, kw), dilation); Cf = Ci + 1 for the guidance.
CASES = {
    "3x3d1": (2, 3, 5, 5, 7, (3, 3), 1),
    "3x3d2": (2, 3, 5, 5, 7, (3, 3), 2),
    "5x3d1": (2, 3, 5, 5, 7, (5, 3), 1),
    "ci>co": (2, 20, 4, 5, 7, (3, 3), 1),  # two Ci chunks, Cf = 21: two channel chunks
    "co>16": (1, 6, 18, 4, 9, (3, 3), 1),  # two Co tiles
}


@pytest.fixture(scope="module", autouse=True)
def device():
    """The device of the test tensors; makes sure the kernels are interpreted on a CPU box."""
    if torch.cuda.is_available() and not _triton.kernels_interpreted():
        yield torch.device("cuda")
        return
    os.environ["TRITON_INTERPRET"] = "1"
    if not _triton.kernels_interpreted():
        _triton._reload_kernels()  # imported compiled before this module set the variable
    assert _triton.kernels_interpreted()
    yield torch.device("cpu")
    if _PREVIOUS_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS_INTERPRET


# ----------------------------------------------------------------------------------------------
# inputs and comparisons


def make_inputs(case, device, dtype=torch.float64, seed=0):
    n, ci, co, h, w, kernel_size, dilation = case
    offsets = ref_offsets(kernel_size, dilation)
    g = torch.Generator().manual_seed(seed)
    k = len(offsets)

    def rnd(*shape, fn=torch.randn):
        # Rounded to dtype first, so the float64 reference sees exactly the tested inputs.
        return fn(*shape, generator=g).to(dtype).to(device, torch.float64)

    return {
        "offsets": offsets,
        "u": rnd(n, ci, h, w),
        "v": rnd(n, ci + 1, h, w),
        "s": rnd(n, k, h, w, fn=torch.rand),
        "weight": (rnd(co, ci, *kernel_size) / math.sqrt(ci * k)).to(dtype).double(),
        "grad_y": rnd(n, co, h, w),
        "grad_d2": rnd(n, k, h, w),
    }


def grads_of(fn, inputs: list[torch.Tensor], grad_out: torch.Tensor, dtype: torch.dtype):
    """(output, grads of all inputs) of ``fn`` on leaf copies of ``inputs`` in ``dtype``."""
    leaves = [x.detach().to(dtype).requires_grad_() for x in inputs]
    out = fn(*leaves)
    return out, torch.autograd.grad(out, leaves, grad_out.to(dtype))


def assert_close64(got: torch.Tensor, ref: torch.Tensor, rtol=1e-4, atol=1e-5) -> None:
    torch.testing.assert_close(got.double().cpu(), ref.double().cpu(), rtol=rtol, atol=atol)


def assert_rel_error(got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    """Max |got - ref| relative to max |ref|: the scale-free check for 16-bit results."""
    err = (got.double().cpu() - ref.double().cpu()).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= tol * max(scale, 1e-12), f"max error {err:.3g} vs scale {scale:.3g}"


# ----------------------------------------------------------------------------------------------


def test_is_available():
    assert _triton.is_available()


def test_offsets_match_library_order():
    assert ref_offsets((5, 3), 2) == kernel_offsets((5, 3), 2)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_difference_conv_forward_and_gradients(case, device):
    x = make_inputs(case, device)
    offsets = x["offsets"]
    inputs = [x["u"], x["s"], x["weight"]]
    y_ref, grads_ref = grads_of(lambda *a: ref_dc(*a, offsets), inputs, x["grad_y"], torch.float64)
    y, grads = grads_of(
        lambda *a: _triton.difference_conv(*a, offsets), inputs, x["grad_y"], torch.float32
    )
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    assert_close64(y, y_ref)
    for got, ref in zip(grads, grads_ref, strict=True):
        assert_close64(got, ref)
    # The three-GEMM path, float32 on the CPU.
    cpu = [t.cpu() for t in inputs]
    y_fast, grads_fast = grads_of(
        lambda *a: difference_conv(*a, offsets), cpu, x["grad_y"].cpu(), torch.float32
    )
    assert_close64(y, y_fast)
    for got, fast in zip(grads, grads_fast, strict=True):
        assert_close64(got, fast)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_neighbour_squared_distance_forward_and_gradient(case, device):
    x = make_inputs(case, device)
    offsets = x["offsets"]
    d2_ref, (gv_ref,) = grads_of(lambda v: ref_d2(v, offsets), [x["v"]], x["grad_d2"], torch.double)
    d2, (gv,) = grads_of(
        lambda v: _triton.neighbour_squared_distance(v, offsets),
        [x["v"]],
        x["grad_d2"],
        torch.float32,
    )
    assert d2.dtype == torch.float32 and d2.shape == d2_ref.shape
    assert_close64(d2, d2_ref)
    assert_close64(gv, gv_ref)
    d2_fast, (gv_fast,) = grads_of(
        lambda v: neighbour_squared_distance(v, offsets),
        [x["v"].cpu()],
        x["grad_d2"].cpu(),
        torch.float32,
    )
    assert_close64(d2, d2_fast)
    assert_close64(gv, gv_fast)


def test_composed_sdc_matches_fast_path(device):
    """d2 -> Perona-Malik S -> difference conv, gradients into u, v and W, as the lead wires it."""
    x = make_inputs(CASES["3x3d2"], device, seed=1)
    offsets = x["offsets"]

    def sdc(nsd, dc):
        def fn(u, v, weight):
            return dc(u, torch.rsqrt(1.0 + nsd(v, offsets) / 0.5**2), weight, offsets)

        return fn

    inputs = [x["u"], x["v"], x["weight"]]
    y, grads = grads_of(
        sdc(_triton.neighbour_squared_distance, _triton.difference_conv),
        inputs,
        x["grad_y"],
        torch.float32,
    )
    y_fast, grads_fast = grads_of(
        sdc(neighbour_squared_distance, difference_conv),
        [t.cpu() for t in inputs],
        x["grad_y"].cpu(),
        torch.float32,
    )
    assert_close64(y, y_fast)
    for got, fast in zip(grads, grads_fast, strict=True):
        assert_close64(got, fast)


@pytest.mark.parametrize(
    ("dtype", "tol", "backward"), [(torch.bfloat16, 3e-2, True), (torch.float16, 5e-3, False)]
)
def test_low_precision(dtype, tol, backward, device):
    """16-bit inputs, fp32 accumulation: results within the rounding of the inputs' dtype."""
    x = make_inputs(CASES["3x3d1"], device, dtype=dtype, seed=2)
    offsets = x["offsets"]
    inputs = [x["u"], x["s"], x["weight"]]
    d2 = _triton.neighbour_squared_distance(x["v"].to(dtype), offsets)
    assert d2.dtype == dtype
    assert_rel_error(d2, ref_d2(x["v"], offsets), tol)
    if not backward:
        y = _triton.difference_conv(*(t.to(dtype) for t in inputs), offsets)
        assert y.dtype == dtype
        assert_rel_error(y, ref_dc(*inputs, offsets), tol)
        return
    y_ref, grads_ref = grads_of(lambda *a: ref_dc(*a, offsets), inputs, x["grad_y"], torch.float64)
    y, grads = grads_of(lambda *a: _triton.difference_conv(*a, offsets), inputs, x["grad_y"], dtype)
    assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert_rel_error(y, y_ref, tol)
    for got, ref in zip(grads, grads_ref, strict=True):
        assert_rel_error(got, ref, tol)


def test_functional_backend_triton_matches_reference(device, monkeypatch):
    """``backend="triton"`` on the functional op, and for a whole block: Eq. 5 end to end."""
    x = make_inputs(CASES["3x3d2"], device, seed=9)
    u, v, weight = (x[name].float() for name in ("u", "v", "weight"))
    expected = sdc_reference(x["u"], x["v"], x["weight"], dilation=2, lam=0.5)
    calls = []
    launch = _triton.difference_conv
    monkeypatch.setattr(_triton, "difference_conv", lambda *a: calls.append(1) or launch(*a))
    y = SF.semantic_difference_conv2d(u, v, weight, dilation=2, lam=0.5, backend="triton")
    assert_close64(y, expected)
    with SF.sdc_backend("triton"):
        y = SF.semantic_difference_conv2d(u, v, weight, dilation=2, lam=0.5)
    assert_close64(y, expected)
    assert len(calls) == 2


def test_weight_gradient_split_over_pixels(device, monkeypatch):
    """The two-stage split-K reduction of dW over pixel ranges gives the same gradient."""
    x = make_inputs(CASES["3x3d1"], device, seed=3)
    offsets = x["offsets"]
    inputs = [x["u"], x["s"], x["weight"]]
    _, grads_ref = grads_of(lambda *a: ref_dc(*a, offsets), inputs, x["grad_y"], torch.float64)
    monkeypatch.setattr(_triton, "_wgrad_splits_override", 3)
    _, grads = grads_of(
        lambda *a: _triton.difference_conv(*a, offsets), inputs, x["grad_y"], torch.float32
    )
    assert_close64(grads[2], grads_ref[2])


def test_weight_gradient_split_heuristic():
    splits = _triton._wgrad_splits
    # 2, 256->256, 128x256 on 132 SMs: 32 tiles of 128x128x(k=8) -> 17 splits fill the GPU.
    assert splits(2 * 128 * 256, 8, 256, 256, sms=132) == 17
    # Enough tiles already (2048->512: 512 tiles for 4 x 108 SMs): no split.
    assert splits(2 * 64 * 128, 8, 2048, 512, sms=108) == 1
    # Small images: at least 1024 pixels per split.
    assert splits(2 * 32 * 32, 8, 64, 64, sms=132) == 2
    # The fp32 workspace (splits x K x Ci x Co) stays under its cap.
    n = splits(1 << 24, 8, 1024, 1024, sms=10_000)
    assert n * 8 * 1024 * 1024 * 4 <= _triton._WGRAD_MAX_WORKSPACE_BYTES


def test_layouts_and_strides(device):
    """Channels-last U, broadcast (stride-0) S, non-contiguous dY; outputs follow U's format."""
    x = make_inputs(CASES["5x3d1"], device, seed=4)
    offsets = x["offsets"]
    n, k, h, w = x["s"].shape
    s_row = x["s"][:, :, :1].float()
    u = x["u"].float().contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = x["weight"].float().requires_grad_()
    s = s_row.expand(n, k, h, w).requires_grad_()  # a leaf with stride 0 along H
    grad_y = x["grad_y"].float().transpose(2, 3).contiguous().transpose(2, 3)
    assert not grad_y.is_contiguous()
    y = _triton.difference_conv(u, s, weight, offsets)
    assert y.is_contiguous(memory_format=torch.channels_last)
    got = torch.autograd.grad(y, (u, s, weight), grad_y)
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    leaves = [t.detach().double().requires_grad_() for t in (u, s, weight)]
    y_ref = ref_dc(*leaves, offsets)
    refs = torch.autograd.grad(y_ref, leaves, grad_y.double())
    assert_close64(y, y_ref)
    for g, r in zip(got, refs, strict=True):
        assert_close64(g, r)
    # Contiguous U gives a contiguous Y, as the fast path does.
    assert _triton.difference_conv(u.detach().contiguous(), s, weight, offsets).is_contiguous()


def test_only_requested_gradients(device):
    """S without grad (e.g. "ones"), W frozen: only dU is computed, and it is right."""
    x = make_inputs(CASES["3x3d1"], device, seed=5)
    offsets = x["offsets"]
    u = x["u"].float().requires_grad_()
    s, weight = x["s"].float(), x["weight"].float()
    y = _triton.difference_conv(u, s, weight, offsets)
    (grad_u,) = torch.autograd.grad(y, u, x["grad_y"].float())
    u64 = x["u"].clone().requires_grad_()
    (grad_ref,) = torch.autograd.grad(ref_dc(u64, x["s"], x["weight"], offsets), u64, x["grad_y"])
    assert_close64(grad_u, grad_ref)


def test_broadcast_upstream_gradients(device):
    """``y.sum()`` / ``d2.sum()`` give stride-0 upstream gradients; the wrappers copy them."""
    x = make_inputs(CASES["3x3d2"], device, seed=8)
    offsets = x["offsets"]
    u, v = (x[name].float().requires_grad_() for name in ("u", "v"))
    _triton.difference_conv(u, x["s"].float(), x["weight"].float(), offsets).sum().backward()
    _triton.neighbour_squared_distance(v, offsets).sum().backward()
    u64, v64 = (x[name].clone().requires_grad_() for name in ("u", "v"))
    ref_dc(u64, x["s"], x["weight"], offsets).sum().backward()
    ref_d2(v64, offsets).sum().backward()
    assert_close64(u.grad, u64.grad)
    assert_close64(v.grad, v64.grad)


def test_neighbours_outside_contribute_nothing(device):
    """S at pixels whose neighbour is outside never enters Y (NaN there is harmless)."""
    x = make_inputs(CASES["3x3d1"], device, seed=6)
    offsets = x["offsets"]
    s = x["s"].clone()
    for k, (dy, dx) in enumerate(offsets):
        _, inside = shifted_and_inside(x["u"], dy, dx)
        s[:, k][:, inside == 0] = float("nan")
    y = _triton.difference_conv(x["u"].float(), s.float(), x["weight"].float(), offsets)
    assert torch.isfinite(y).all()
    assert_close64(y, ref_dc(x["u"], torch.nan_to_num(s, nan=0.0), x["weight"], offsets))


def test_image_smaller_than_the_kernel(device):
    """2×3 image, dilation 3: every neighbour is outside, so Y, d2 and all gradients are zero."""
    x = make_inputs((1, 4, 3, 2, 3, (3, 3), 3), device, seed=7)
    offsets = x["offsets"]
    y, grads = grads_of(
        lambda *a: _triton.difference_conv(*a, offsets),
        [x["u"], x["s"], x["weight"]],
        x["grad_y"],
        torch.float32,
    )
    d2, (gv,) = grads_of(
        lambda v: _triton.neighbour_squared_distance(v, offsets),
        [x["v"]],
        x["grad_d2"],
        torch.float32,
    )
    for t in (y, d2, gv, *grads):
        assert torch.count_nonzero(t) == 0


def test_one_by_one_kernel_has_no_offsets(device):
    u = torch.randn(1, 3, 4, 5, device=device, requires_grad=True)
    weight = torch.randn(2, 3, 1, 1, device=device, requires_grad=True)
    s = torch.ones(1, 0, 4, 5, device=device)
    y = _triton.difference_conv(u, s, weight, [])
    assert y.shape == (1, 2, 4, 5) and torch.count_nonzero(y) == 0
    y.sum().backward()
    assert torch.count_nonzero(u.grad) == 0 and torch.count_nonzero(weight.grad) == 0
    assert _triton.neighbour_squared_distance(u.detach(), []).shape == (1, 0, 4, 5)


def test_rejects_bad_inputs(device):
    offsets = kernel_offsets((3, 3), 1)
    u = torch.randn(1, 3, 4, 5, device=device)
    weight = torch.randn(2, 3, 3, 3, device=device)
    s = torch.rand(1, 8, 4, 5, device=device)
    with pytest.raises(ValueError, match="supports"):
        _triton.TritonDifferenceConv.apply(u.double(), s, weight, offsets)
    with pytest.raises(ValueError, match="supports"):
        _triton.TritonNeighbourSquaredDistance.apply(u.double(), offsets)
    with pytest.raises(ValueError, match="s must be"):
        _triton.difference_conv(u, s[:, :7], weight, offsets)
    with pytest.raises(ValueError, match="offsets"):
        _triton.difference_conv(u, s, weight, offsets[:7])


def test_float64_goes_to_the_fast_path(device):
    """What the kernels do not take (float64) the wrappers hand to the PyTorch fast path."""
    offsets = kernel_offsets((3, 3), 1)
    u, v = (torch.randn(1, 3, 4, 5, device=device, dtype=torch.float64) for _ in range(2))
    weight = torch.randn(2, 3, 3, 3, device=device, dtype=torch.float64)
    s = torch.rand(1, 8, 4, 5, device=device, dtype=torch.float64)
    assert not _triton.supports(u) and _triton.supports(u.float())
    y = _triton.difference_conv(u, s, weight, offsets)
    assert y.dtype == torch.float64
    assert_close64(y, ref_dc(u, s, weight, offsets))
    assert_close64(_triton.neighbour_squared_distance(v, offsets), ref_d2(v, offsets))


def test_interpreter_after_a_compiled_import():
    """triton and the kernels imported without TRITON_INTERPRET, then re-imported with it (what
    the module fixture does when another test imported them first): the kernels still run."""
    code = textwrap.dedent(
        """
        import os
        os.environ.pop("TRITON_INTERPRET", None)
        import torch
        from sdnseg.nn import _triton
        from sdnseg.nn._gemm import difference_conv
        from sdnseg.nn._tap_stacks import kernel_offsets
        assert not _triton.kernels_interpreted()
        os.environ["TRITON_INTERPRET"] = "1"
        _triton._reload_kernels()
        assert _triton.kernels_interpreted()
        offsets = kernel_offsets((3, 3), 1)
        u, s, w = torch.randn(1, 3, 4, 5), torch.rand(1, 8, 4, 5), torch.randn(2, 3, 3, 3)
        y = _triton.difference_conv(u, s, w, offsets)
        torch.testing.assert_close(y, difference_conv(u, s, w, offsets))
        print("OK")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "OK", result.stderr[-2000:]


def test_benchmark_check_dry_run(device, capsys):
    """``benchmarks/sdc_speed_cuda.py --check --device cpu`` runs and passes."""
    if device.type != "cpu":
        pytest.skip("on a GPU, run `python benchmarks/sdc_speed_cuda.py --check` itself")
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "sdc_speed_cuda.py"
    spec = importlib.util.spec_from_file_location("sdc_speed_cuda", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().endswith("PASS")


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    """Every kernel compiles for an H100 (Triton + ptxas, no GPU needed): catches what the
    interpreter cannot (types, layouts, shared memory). ~20 s; run with ``-m slow``."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "sdc_speed_cuda.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    result = subprocess.run(
        [sys.executable, str(path), "--compile-only", "--arch", "90", "--defaults-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().endswith("PASS")
