"""sdnseg.nn.functional against the plain loop references (sdnseg.nn._reference, tests/reference.py)."""

import pytest
import torch
import torch.nn.functional as F

from sdnseg.nn import functional as SF
from sdnseg.nn._reference import sc_reference, sdc_reference
from tests.reference import cdc_reference, diffusion_reference

F64 = torch.float64


def _inputs(n=2, ci=3, co=4, cf=5, h=6, w=7, kh=3, kw=3, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, ci, h, w, generator=g, dtype=dtype)
    v = torch.randn(n, cf, h, w, generator=g, dtype=dtype)
    weight = torch.randn(co, ci, kh, kw, generator=g, dtype=dtype)
    bias = torch.randn(co, generator=g, dtype=dtype)
    return u, v, weight, bias


@pytest.mark.parametrize(
    ("ci", "co", "kh", "kw", "dilation", "h", "w"),
    [
        (3, 4, 3, 3, 1, 6, 7),  # Co > Ci: layout (a)
        (5, 2, 3, 3, 1, 5, 9),  # Co < Ci: layout (b)
        (4, 4, 5, 5, 1, 7, 5),
        (3, 2, 3, 5, 2, 9, 6),
        (2, 3, 3, 3, 3, 5, 5),  # dilation 3 on a 5x5 image: most taps fall outside
        (2, 2, 7, 7, 2, 4, 4),  # kernel wider than the image
    ],
)
@pytest.mark.parametrize("similarity", ["perona_malik", "exp", "ones"])
def test_sdc_matches_reference(ci, co, kh, kw, dilation, h, w, similarity):
    u, v, weight, bias = _inputs(ci=ci, co=co, kh=kh, kw=kw, h=h, w=w)
    expected = sdc_reference(u, v, weight, bias, dilation, similarity, lam=0.8)
    actual = SF.semantic_difference_conv2d(u, v, weight, bias, dilation, similarity, lam=0.8)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_sdc_callable_similarity_and_tensor_lam():
    u, v, weight, _ = _inputs()

    def cauchy(d2, lam):
        return 1 / (1 + d2 / lam**2)

    lam = torch.tensor(0.5, dtype=F64)
    expected = sdc_reference(u, v, weight, None, 1, cauchy, lam=0.5)
    actual = SF.semantic_difference_conv2d(u, v, weight, similarity=cauchy, lam=lam)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("ci", "co", "dilation"), [(3, 4, 1), (4, 2, 2)])
@pytest.mark.parametrize("similarity", ["perona_malik", "exp"])
def test_sdc_gradcheck_all_inputs(ci, co, dilation, similarity):
    u, v, weight, bias = _inputs(ci=ci, co=co, h=5, w=6)
    lam = torch.tensor(0.9, dtype=F64)
    for t in (u, v, weight, bias, lam):
        t.requires_grad_(True)

    def fn(u, v, weight, bias, lam):
        return SF.semantic_difference_conv2d(u, v, weight, bias, dilation, similarity, lam)

    assert torch.autograd.gradcheck(fn, (u, v, weight, bias, lam))


def test_sdc_gradients_match_reference_autograd():
    u, v, weight, bias = _inputs(ci=4, co=3, h=5, w=5)
    lam = torch.tensor(0.7, dtype=F64)
    leaves = [t.requires_grad_(True) for t in (u, v, weight, bias, lam)]
    g = torch.randn(2, 3, 5, 5, dtype=F64)
    fast = torch.autograd.grad(
        (SF.semantic_difference_conv2d(u, v, weight, bias, lam=lam) * g).sum(), leaves
    )
    ref = torch.autograd.grad((sdc_reference(u, v, weight, bias, lam=lam) * g).sum(), leaves)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_sdc_float32_matches_float64():
    u, v, weight, bias = _inputs(ci=8, co=6, h=9, w=11)
    expected = SF.semantic_difference_conv2d(u, v, weight, bias)
    actual = SF.semantic_difference_conv2d(u.float(), v.float(), weight.float(), bias.float())
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-5)


def test_constant_u_gives_zero():
    _, v, weight, _ = _inputs()
    u = torch.full((2, 3, 6, 7), 3.5, dtype=F64)
    y = SF.semantic_difference_conv2d(u, v, weight)
    assert torch.count_nonzero(y) == 0


def test_centre_tap_has_no_effect():
    u, v, weight, _ = _inputs()
    changed = weight.clone()
    changed[:, :, 1, 1] += 10
    torch.testing.assert_close(
        SF.semantic_difference_conv2d(u, v, weight), SF.semantic_difference_conv2d(u, v, changed)
    )


def test_no_false_boundary_at_image_edge():
    # A constant image has no edge anywhere, also at the border: zero padding would invent one.
    u = torch.ones(1, 1, 5, 5, dtype=F64)
    weight = torch.ones(1, 1, 3, 3, dtype=F64)
    y = SF.semantic_difference_conv2d(u, u, weight, similarity="ones")
    assert torch.count_nonzero(y) == 0


@pytest.mark.parametrize("dilation", [1, 2])
def test_sdc_ones_equals_cdc_theta_one(dilation):
    u, v, weight, bias = _inputs(h=7, w=8)
    sdc = SF.semantic_difference_conv2d(u, v, weight, bias, dilation, similarity="ones")
    cdc = SF.central_difference_conv2d(u, weight, bias, dilation, theta=1.0)
    torch.testing.assert_close(sdc, cdc, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("theta", [0.0, 0.7, 1.0])
def test_cdc_matches_reference(theta):
    u, _, weight, bias = _inputs(ci=3, co=2, h=5, w=6, kh=3, kw=5)
    expected = cdc_reference(u, weight, bias, 2, theta)
    actual = SF.central_difference_conv2d(u, weight, bias, 2, theta)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("ci", "co", "kh", "kw", "dilation", "h", "w"),
    [(3, 4, 3, 3, 1, 6, 7), (4, 4, 5, 5, 1, 7, 5), (3, 2, 3, 5, 2, 9, 6), (2, 2, 7, 7, 2, 4, 4)],
)
@pytest.mark.parametrize("similarity", ["perona_malik", "exp"])
def test_sc_matches_reference(ci, co, kh, kw, dilation, h, w, similarity):
    u, v, weight, bias = _inputs(ci=ci, co=co, kh=kh, kw=kw, h=h, w=w)
    expected = sc_reference(u, v, weight, bias, dilation, similarity, lam=0.8)
    actual = SF.semantic_conv2d(u, v, weight, bias, dilation, similarity, lam=0.8)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kh", "kw", "dilation"), [(3, 3, 1), (3, 5, 2), (5, 5, 3)])
def test_sc_with_ones_is_a_plain_convolution(kh, kw, dilation):
    """S ≡ 1 leaves ``sum_k W_k U_{m+k}`` with zero padding: conv2d itself, an independent check."""
    u, v, weight, bias = _inputs(kh=kh, kw=kw, h=7, w=8)
    padding = ((kh // 2) * dilation, (kw // 2) * dilation)
    expected = F.conv2d(u, weight, bias, padding=padding, dilation=dilation)
    actual = SF.semantic_conv2d(u, v, weight, bias, dilation, similarity="ones")
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_sc_zero_pads_at_the_border():
    # Unlike SDC, a constant image gives the count of in-image taps: outside contributes nothing.
    u = torch.ones(1, 1, 4, 5, dtype=F64)
    weight = torch.ones(1, 1, 3, 3, dtype=F64)
    y = SF.semantic_conv2d(u, u, weight, similarity="perona_malik")[0, 0]
    assert y[0, 0] == 4 and y[0, 2] == 6 and y[1, 1] == 9 and y[3, 4] == 4


def test_sc_similarity_weights_each_neighbour():
    # One neighbour across a guidance edge: its term is scaled by g(d2), the others by 1.
    u = torch.zeros(1, 1, 3, 3, dtype=F64)
    u[0, 0, 1, 2] = 1.0
    v = torch.zeros(1, 1, 3, 3, dtype=F64)
    v[0, 0, :, 2] = 2.0  # the right column is another region
    weight = torch.ones(1, 1, 3, 3, dtype=F64)
    y = SF.semantic_conv2d(u, v, weight, lam=1.0)[0, 0]
    assert float(y[1, 1]) == pytest.approx(1 / 5**0.5)  # g(d2 = 4) at lam = 1
    assert float(y[1, 2]) == pytest.approx(1.0)  # the centre: S = g(0) = 1


def test_sc_gradcheck_all_inputs():
    u, v, weight, bias = _inputs(ci=3, co=2, h=5, w=6)
    lam = torch.tensor(0.9, dtype=F64)
    for t in (u, v, weight, bias, lam):
        t.requires_grad_(True)

    def fn(u, v, weight, bias, lam):
        return SF.semantic_conv2d(u, v, weight, bias, 2, "perona_malik", lam)

    assert torch.autograd.gradcheck(fn, (u, v, weight, bias, lam))


def test_sc_bad_guidance_is_an_error():
    u, v, weight, _ = _inputs()
    with pytest.raises(ValueError, match="v must have the batch size and spatial size of u"):
        SF.semantic_conv2d(u, v[..., :3], weight)


@pytest.mark.parametrize("operator", ["sdc", "cdc", "sc"])
def test_autocast_runs_in_the_autocast_dtype_like_conv2d(operator):
    """Mixed precision hands SDC a bfloat16 ``u`` and the module's float32 weight."""
    u, v, weight, bias = _inputs(ci=4, co=3, h=6, w=7, dtype=torch.float32)
    weight.requires_grad_(True)
    u_half = u.bfloat16().requires_grad_(True)

    def run(u, v, weight, bias):
        if operator == "sdc":
            return SF.semantic_difference_conv2d(u, v, weight, bias, lam=torch.tensor(1.5))
        if operator == "sc":
            return SF.semantic_conv2d(u, v, weight, bias, lam=torch.tensor(1.5))
        return SF.central_difference_conv2d(u, weight, bias, theta=0.7)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = run(u_half, v, weight, bias)
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert weight.grad is not None and weight.grad.dtype == torch.float32
    assert u_half.grad is not None and u_half.grad.dtype == torch.bfloat16
    # The float32 operator on the inputs rounded to bfloat16, up to bfloat16's own rounding of
    # the intermediates (8 bits of mantissa: ~0.4% each, relative to the output's scale).
    expected = run(*[t.bfloat16().float() for t in (u, v, weight, bias)])
    error = (y.float() - expected).abs().max() / expected.abs().max()
    assert error < 0.02, f"bfloat16 result off by {error:.3f} of max |y|"


def test_meta_tensors_give_the_output_shape():
    """Models are built and FLOP-counted on the meta device; meta has no autocast state."""
    u, v, weight, bias = (t.to("meta") for t in _inputs(ci=3, co=5, dtype=torch.float32))
    assert SF.semantic_difference_conv2d(u, v, weight, bias).shape == (2, 5, 6, 7)
    assert SF.central_difference_conv2d(u, weight, bias).shape == (2, 5, 6, 7)


def test_cdc_gradcheck():
    u, _, weight, bias = _inputs(h=4, w=5)
    for t in (u, weight, bias):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda u, w, b: SF.central_difference_conv2d(u, w, b, theta=0.7), (u, weight, bias)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"u": torch.randn(3, 6, 7)}, "u must be"),
        ({"v": torch.randn(2, 5, 6, 8)}, "spatial size"),
        ({"v": torch.randn(1, 5, 6, 7)}, "batch size"),
        ({"weight": torch.randn(4, 3, 2, 3)}, "odd"),
        ({"weight": torch.randn(4, 2, 3, 3)}, "input channels"),
        ({"bias": torch.randn(3)}, "bias"),
        ({"lam": 0.0}, "lam must be positive"),
        ({"lam": torch.tensor(-1.0)}, "lam must be positive"),
        ({"similarity": "gauss"}, "similarity must be one of"),
        ({"dilation": 0}, "dilation"),
        ({"v": torch.randn(2, 5, 6, 7, dtype=F64)}, "dtype"),
    ],
)
def test_sdc_errors(kwargs, match):
    args = {
        "u": torch.randn(2, 3, 6, 7),
        "v": torch.randn(2, 5, 6, 7),
        "weight": torch.randn(4, 3, 3, 3),
        "bias": torch.randn(4),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SF.semantic_difference_conv2d(**args)


def test_backend_switch_rejects_unknown_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        SF.set_sdc_backend("cuda")


# --- the classical solver, Eq. 3-4 ---------------------------------------------------------


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("guided", [True, False])
def test_diffusion_matches_reference(connectivity, guided):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(1, 2, 5, 6, generator=g, dtype=F64)
    v = torch.randn(1, 3, 5, 6, generator=g, dtype=F64) if guided else None
    alpha, beta = [1.0, 0.9, 1.0], [0.1, 0.05, 0.12]
    expected = diffusion_reference(u, v, 3, alpha, beta, 0.6, connectivity)
    actual = SF.semantic_diffusion(u, v, 3, alpha, beta, 0.6, connectivity)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_diffusion_preserves_mean_with_4_connectivity():
    u = torch.rand(2, 3, 16, 19, dtype=F64)
    v = torch.rand(2, 4, 16, 19, dtype=F64)
    out = SF.semantic_diffusion(u, v, steps=25, beta=0.25, lam=0.3)
    torch.testing.assert_close(out.mean((2, 3)), u.mean((2, 3)), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out, u)


def test_diffusion_does_not_cross_a_guidance_edge_when_lam_is_small():
    u = torch.zeros(1, 1, 8, 8, dtype=F64)
    u[..., :4] = 1.0
    v = u.clone()  # guidance with the same step edge
    out = SF.semantic_diffusion(u, v, steps=50, beta=0.25, lam=1e-4)
    # A step of height 1 with lam 1e-4 has g ~ 1e-4 across the edge: almost nothing leaks.
    assert (out[..., :4] > 0.99).all() and (out[..., 4:] < 0.01).all()
    isotropic = SF.semantic_diffusion(u, v, steps=50, beta=0.25, lam=1e4)
    assert isotropic[..., 4].mean() > 0.2


def test_diffusion_smooths_noise_and_keeps_edge():
    g = torch.Generator().manual_seed(0)
    clean = torch.zeros(1, 1, 32, 32, dtype=F64)
    clean[..., 16:] = 1.0
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g, dtype=F64)
    # The paper's g = 1/sqrt(1 + d2/lam^2) only slows diffusion across an edge (its flux still grows
    # with the jump), so lam sits well below the step height of 1 and the run stays short.
    out = SF.semantic_diffusion(noisy, None, steps=30, beta=0.2, lam=0.05)
    # Noise inside each region goes down a lot.
    assert out[..., 2:14].std() < 0.4 * noisy[..., 2:14].std()
    # The edge stays sharp: the jump between columns 15 and 16 is kept.
    jump = (out[..., 16] - out[..., 15]).mean()
    assert jump > 0.6
    # Isotropic diffusion with the same number of steps blurs it.
    iso = SF.semantic_diffusion(noisy, None, steps=30, beta=0.2, lam=1e6)
    assert (iso[..., 16] - iso[..., 15]).mean() < 0.5 * jump


def test_diffusion_warns_when_unstable():
    with pytest.warns(RuntimeWarning, match="unstable"):
        SF.semantic_diffusion(torch.rand(1, 1, 4, 4), steps=1, beta=0.5)


def test_diffusion_errors():
    with pytest.raises(ValueError, match="connectivity"):
        SF.semantic_diffusion(torch.rand(1, 1, 4, 4), connectivity=6)
    with pytest.raises(ValueError, match="alpha has 2 values"):
        SF.semantic_diffusion(torch.rand(1, 1, 4, 4), steps=3, alpha=[1.0, 1.0])
    with pytest.raises(ValueError, match="v must match"):
        SF.semantic_diffusion(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5))
