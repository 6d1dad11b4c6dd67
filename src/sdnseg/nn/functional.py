"""Functional operators of the Semantic Diffusion Network (Tan, Wu, Pi, 2022).

* :func:`semantic_difference_conv2d`: the semantic difference convolution (SDC), Eq. 5.
* :func:`central_difference_conv2d`: CDC (Yu et al., CVPR 2020), for the operator ablation (Table 3a).
* :func:`semantic_conv2d`: the similarity-weighted convolution without the difference term, the
  fourth cell of the Table 3(a) factorial (the pixel-adaptive convolution idea, Su et al. 2019).
* :func:`semantic_diffusion`: the classical finite-difference solver of Eq. 3–4 that SDC comes from.

Similarity. Eq. 3 uses the squared norm ``|V_n - V_m|^2``; we use its mean over the ``Cf`` guidance
channels, ``d2 = |V_n - V_m|^2 / Cf``, so that one ``lam`` means the same thing for guidance of any
width. ``"perona_malik"`` is the paper's diffusivity ``g = 1 / sqrt(1 + d2 / lam^2)``.

Borders. A neighbour outside the image contributes nothing (its whole term is zero). Zero-padding
``U`` instead would turn every border pixel into a false boundary of height ``U_m``.

Fast path. ``Y = sum_k W_k · S_k ⊙ (U_{m+k} - U_m)`` is one matrix product once the
similarity-weighted differences ``D_k = S_k ⊙ (shift_k U - U)`` are stacked as (K·Ci) rows: the
GEMM of a convolution, and backward is a convolution's other two GEMMs plus element-wise gathers
(:mod:`sdnseg.nn._gemm`, which builds D chunk by chunk and never keeps it).

Backends. Every operator takes ``backend=``: ``"auto"`` (Triton for CUDA tensors where it runs,
else the three-GEMM path), ``"reference"`` (the float64-exact loop of :mod:`sdnseg.nn._reference`),
``"torch"`` (the three-GEMM path on any device, its element-wise work in Triton kernels on CUDA),
``"torch-only"`` (the same in PyTorch ops only) or ``"triton"``; None is the current default, set
for a whole model by ``with sdc_backend(...)``, :func:`set_sdc_backend` or ``SDNSEG_SDC_BACKEND``.
One function, :func:`sdnseg.nn._dispatch.choose_route`, makes the choice, logged at DEBUG.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from sdnseg.nn import _gemm, _reference, _triton

# The backend switch is part of this module's API; the dispatch itself lives in _dispatch.
from sdnseg.nn._dispatch import BACKENDS as BACKENDS
from sdnseg.nn._dispatch import choose_route, exporting
from sdnseg.nn._dispatch import default_backend as default_backend
from sdnseg.nn._dispatch import sdc_backend as sdc_backend
from sdnseg.nn._dispatch import set_sdc_backend as set_sdc_backend
from sdnseg.nn._tap_stacks import kernel_offsets

Similarity = str | Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]
SIMILARITIES = ("perona_malik", "exp", "ones")


def perona_malik(d2: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Perona–Malik diffusivity ``1 / sqrt(1 + d2 / lam^2)`` (Eq. 2)."""
    return torch.rsqrt(1.0 + d2 / lam**2)


def exp_similarity(d2: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    """Gaussian diffusivity ``exp(-d2 / lam^2)`` (Perona and Malik's other choice)."""
    return torch.exp(-d2 / lam**2)


def resolve_similarity(similarity: Similarity) -> Callable | None:
    """The similarity function for a name or callable; ``None`` for ``"ones"``."""
    if callable(similarity):
        return similarity
    if similarity == "perona_malik":
        return perona_malik
    if similarity == "exp":
        return exp_similarity
    if similarity == "ones":
        return None
    raise ValueError(f"similarity must be one of {SIMILARITIES} or a callable, got {similarity!r}")


def _check_lam(lam: torch.Tensor | float) -> None:
    if isinstance(lam, torch.Tensor):
        if lam.numel() != 1:
            raise ValueError(f"lam must be a scalar, got a tensor of shape {tuple(lam.shape)}")
        # A value check cannot be traced: export and compile trust the module's softplus.
        tracing = exporting() or torch.compiler.is_compiling()
        if not tracing and not bool(lam.detach() > 0):
            raise ValueError(f"lam must be positive, got {lam.item()}")
    elif not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be positive, got {lam!r}")


def _check_conv_args(
    u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int
) -> None:
    if u.dim() != 4:
        raise ValueError(f"u must be (N, C, H, W), got shape {tuple(u.shape)}")
    if weight.dim() != 4:
        raise ValueError(f"weight must be (Co, Ci, kh, kw), got shape {tuple(weight.shape)}")
    if weight.shape[1] != u.shape[1]:
        raise ValueError(
            f"weight has {weight.shape[1]} input channels but u has {u.shape[1]} "
            f"(weight {tuple(weight.shape)}, u {tuple(u.shape)})"
        )
    kh, kw = weight.shape[2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel size must be odd, got weight of shape {tuple(weight.shape)}")
    if not isinstance(dilation, int) or isinstance(dilation, bool) or dilation < 1:
        raise ValueError(f"dilation must be a positive int, got {dilation!r}")
    tensors = {"u": u, "weight": weight}
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"bias must be ({weight.shape[0]},) to match weight {tuple(weight.shape)}, "
                f"got {tuple(bias.shape)}"
            )
        tensors["bias"] = bias
    _check_same_dtype_device(tensors)
    if not u.is_floating_point():
        raise ValueError(f"u must be a floating point tensor, got {u.dtype}")


def _check_same_dtype_device(tensors: dict[str, torch.Tensor]) -> None:
    (first_name, first), *rest = tensors.items()
    for name, t in rest:
        if t.dtype != first.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}")
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")


def neighbour_similarity(
    v: torch.Tensor,
    kernel_size: tuple[int, int],
    dilation: int = 1,
    similarity: Similarity = "perona_malik",
    lam: torch.Tensor | float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """``S(V_{m+k}, V_m)`` of Eq. 5 for every non-centre offset ``k`` of the kernel: (N, K, H, W).

    Entries whose neighbour is outside the image are meaningless (they multiply a zero difference).
    ``backend``: see the module docstring.
    """
    fn = resolve_similarity(similarity)
    offsets = kernel_offsets(kernel_size, dilation)
    n, _, h, w = v.shape
    route = choose_route(backend, v)  # also for "ones": a bad backend is an error either way
    if fn is None:
        return v.new_ones(n, len(offsets), h, w)
    if route.path == "export":
        d2 = torch.stack([shifted_difference(v, o).square().mean(1) for o in offsets], 1)
    elif route.path == "reference":
        d2 = _reference.neighbour_squared_distance(v, offsets)
    elif route.path == "triton":
        d2 = _triton.neighbour_squared_distance(v, offsets)
    else:
        d2 = _gemm.neighbour_squared_distance(v, offsets, route.elementwise)
    s = fn(d2, lam)
    if s.shape != d2.shape:
        raise ValueError(
            f"similarity callable must return the shape of d2 {tuple(d2.shape)}, got {tuple(s.shape)}"
        )
    return s


def semantic_difference_conv2d(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
    similarity: Similarity = "perona_malik",
    lam: torch.Tensor | float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """Semantic difference convolution, Eq. 5 of the paper.

    ``Y_m = sum_k W_k · S(V_{m+k·d}, V_m) · (U_{m+k·d} - U_m) (+ bias)`` over the kh×kw offsets ``k``
    around the centre, with dilation ``d``; stride 1, output the size of the input.

    Args:
        u: feature to diffuse, (N, Ci, H, W).
        v: semantic guidance, (N, Cf, H, W), same N, H, W as ``u`` (any Cf).
        weight: (Co, Ci, kh, kw), kh and kw odd. The centre tap multiplies ``U_m - U_m = 0``
            and so receives no gradient.
        bias: (Co,) or None.
        dilation: spacing of the kernel taps.
        similarity: ``"perona_malik"`` (``1/sqrt(1 + d2/lam^2)``, the paper's g), ``"exp"``
            (``exp(-d2/lam^2)``), ``"ones"`` (a pure pixel-difference convolution, ``v`` unused)
            or a callable ``f(d2, lam)`` returning a tensor of d2's shape; ``d2`` is the mean over
            the Cf guidance channels of ``(V_n - V_m)^2``.
        lam: positive float or scalar tensor (gradients flow into a tensor).
        backend: ``"auto"``, ``"reference"``, ``"torch"``, ``"torch-only"``, ``"triton"``, or
            None for the current default (see the module docstring).

    Returns:
        (N, Co, H, W).
    """
    if _autocasting(u):
        u, v, weight, bias, lam = _to_autocast_dtype(u.device.type, u, v, weight, bias, lam)
        with torch.autocast(u.device.type, enabled=False):
            return semantic_difference_conv2d(
                u, v, weight, bias, dilation, similarity, lam, backend
            )
    _check_guided_args(u, v, weight, bias, dilation, lam)
    kernel_size = (weight.shape[2], weight.shape[3])
    route = choose_route(backend, u, v)
    if route.path == "torch":
        # One autograd function for the whole of Eq. 5: it keeps d2 for backward, not S as well.
        offsets = kernel_offsets(kernel_size, dilation)
        fn = resolve_similarity(similarity)
        return _gemm.semantic_difference_conv(
            u, v, weight, bias, offsets, fn, lam, route.elementwise
        )
    s = neighbour_similarity(v, kernel_size, dilation, similarity, lam, backend)
    return _difference_conv(u, s, weight, bias, dilation, backend)


def _check_guided_args(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    lam: torch.Tensor | float,
) -> None:
    _check_conv_args(u, weight, bias, dilation)
    if v.dim() != 4:
        raise ValueError(f"v must be (N, Cf, H, W), got shape {tuple(v.shape)}")
    if v.shape[0] != u.shape[0] or v.shape[2:] != u.shape[2:]:
        raise ValueError(
            f"v must have the batch size and spatial size of u: u {tuple(u.shape)}, "
            f"v {tuple(v.shape)} (resize v first, or use the module, which does)"
        )
    _check_same_dtype_device({"u": u, "v": v})
    if isinstance(lam, torch.Tensor):
        _check_same_dtype_device({"u": u, "lam": lam})
    _check_lam(lam)


def semantic_conv2d(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
    similarity: Similarity = "perona_malik",
    lam: torch.Tensor | float = 1.0,
    backend: str | None = None,
) -> torch.Tensor:
    """Similarity-weighted convolution without the difference term (the ``"sc"`` operator).

    ``Y_m = sum_k W_k · S(V_{m+k·d}, V_m) · U_{m+k·d} (+ bias)`` over all kh×kw taps, the centre
    included (``S = g(0) = 1`` there for the paper's similarities): SDC's Eq. 5 with ``U_{m+k}``
    in place of ``U_{m+k} - U_m``, the fourth cell of the Table 3(a) factorial {difference} ×
    {similarity}. It is the pixel-adaptive convolution idea (Su et al., CVPR 2019) with SDC's
    similarity and no normalisation. A neighbour outside the image contributes nothing (zero
    padding), so with ``similarity="ones"`` this is ``F.conv2d(u, weight, bias, padding=d·k//2)``.

    Args and backends as :func:`semantic_difference_conv2d`, except that the centre tap of
    ``weight`` counts. ``"triton"`` (and ``"auto"`` on CUDA) runs the three-GEMM PyTorch path:
    the fused Triton kernels compute differences only. ``"torch"`` on CUDA runs it with the
    Triton element-wise kernels, which take both forms.

    Returns:
        (N, Co, H, W).
    """
    if _autocasting(u):
        u, v, weight, bias, lam = _to_autocast_dtype(u.device.type, u, v, weight, bias, lam)
        with torch.autocast(u.device.type, enabled=False):
            return semantic_conv2d(u, v, weight, bias, dilation, similarity, lam, backend)
    _check_guided_args(u, v, weight, bias, dilation, lam)
    fn = resolve_similarity(similarity)
    offsets = kernel_offsets((weight.shape[2], weight.shape[3]), dilation, centre=True)
    route = choose_route(backend, u, v)
    if route.path == "reference":
        return _reference.sc_reference(u, v, weight, bias, dilation, similarity, lam)
    if route.path == "export":
        return _semantic_conv_export(u, v, weight, bias, offsets, fn, lam)
    return _gemm.semantic_conv(u, v, weight, bias, offsets, fn, lam, route.elementwise)


def _semantic_conv_export(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: list[tuple[int, int]],
    fn: Callable | None,
    lam: torch.Tensor | float,
) -> torch.Tensor:
    terms = []
    for o in offsets:
        u_k = shifted(u, o)
        if fn is not None:
            u_k = u_k * fn(shifted_difference(v, o).square().mean(1, keepdim=True), lam)
        terms.append(u_k)
    co = weight.shape[0]
    w = weight.permute(0, 2, 3, 1).reshape(co, -1)  # tap-major, as the terms are stacked
    return F.conv2d(torch.cat(terms, 1), w[:, :, None, None], bias)


def _autocasting(x: torch.Tensor) -> bool:
    # Meta and other device types have no autocast state; asking about one raises.
    device_type = x.device.type
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def _to_autocast_dtype(device_type: str, *values):
    """Under autocast SDC runs as conv2d does: float32 and half tensors in the autocast dtype,
    float64 left alone.

    Without this, mixed precision would hand the operator a half-precision ``u`` (the output of
    an autocast conv) and the module's float32 weight. The caller then disables autocast, which
    would otherwise move the similarity's ``rsqrt`` back to float32.
    """
    dtype = torch.get_autocast_dtype(device_type)
    castable = (torch.float32, torch.float16, torch.bfloat16)
    return tuple(
        x.to(dtype) if isinstance(x, torch.Tensor) and x.dtype in castable else x for x in values
    )


def _difference_conv(
    u: torch.Tensor,
    s: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    backend: str | None,
) -> torch.Tensor:
    offsets = kernel_offsets((weight.shape[2], weight.shape[3]), dilation)
    route = choose_route(backend, u, s)
    if route.path == "export":
        y = _difference_conv_export(u, s, weight, offsets)
    elif route.path == "reference":
        y = _reference.difference_conv(u, s, weight, offsets)
    elif route.path == "triton":
        y = _triton.difference_conv(u, s, weight, offsets)
    else:
        y = _gemm.difference_conv(u, s, weight, offsets, route.elementwise)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def shifted(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """``x[m + offset]``, zero where ``m + offset`` is outside the image.

    Written with pad and slice only, so that it also exports to ONNX.
    """
    dy, dx = offset
    h, w = x.shape[-2], x.shape[-1]
    r_y, r_x = abs(dy), abs(dx)
    padded = F.pad(x, (r_x, r_x, r_y, r_y))
    return padded[..., r_y + dy : r_y + dy + h, r_x + dx : r_x + dx + w]


def shifted_difference(x: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """``x[m + offset] - x[m]``, zero where ``m + offset`` is outside the image (pad and slice)."""
    return (shifted(x, offset) - x) * shifted(torch.ones_like(x[:, :1]), offset)


def _difference_conv_export(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: list[tuple[int, int]]
) -> torch.Tensor:
    kh, kw = weight.shape[2], weight.shape[3]
    taps = [(i, j) for i in range(kh) for j in range(kw) if (i, j) != (kh // 2, kw // 2)]
    d = torch.cat([s[:, k : k + 1] * shifted_difference(u, o) for k, o in enumerate(offsets)], 1)
    w = torch.cat([weight[:, :, i, j] for i, j in taps], 1)
    return F.conv2d(d, w[:, :, None, None])


def central_difference_conv2d(
    u: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
    theta: float = 0.7,
    backend: str | None = None,
) -> torch.Tensor:
    """Central difference convolution (CDC, Yu et al., CVPR 2020), the paper's Sec. 3.2 operator.

    ``Y_m = sum_k W_k · (U_{m+k·d} - theta · U_m)``, where a neighbour outside the image contributes
    nothing (its whole term, ``-theta · U_m`` included, is zero), so that ``theta = 1`` equals
    :func:`semantic_difference_conv2d` with ``similarity="ones"`` everywhere, border included.

    Since ``conv2d`` with zero padding is ``SDC_ones + sum_{k valid} W_k U_m``, CDC is
    ``(1 - theta) · conv2d + theta · SDC_ones``, which reuses both fast paths; ``backend`` chooses
    the path of ``SDC_ones`` (see the module docstring).
    """
    if _autocasting(u):
        u, weight, bias = _to_autocast_dtype(u.device.type, u, weight, bias)
        with torch.autocast(u.device.type, enabled=False):
            return central_difference_conv2d(u, weight, bias, dilation, theta, backend)
    _check_conv_args(u, weight, None, dilation)
    if not isinstance(theta, (int, float)):
        raise ValueError(f"theta must be a number, got {theta!r}")
    kh, kw = weight.shape[2], weight.shape[3]
    n, _, h, w = u.shape
    ones = u.new_ones(n, kh * kw - 1, h, w)
    y = _difference_conv(u, ones, weight, None, dilation, backend)
    if theta != 1:
        padding = ((kh // 2) * dilation, (kw // 2) * dilation)
        conv = F.conv2d(u, weight, None, padding=padding, dilation=dilation)
        y = theta * y + (1.0 - theta) * conv
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


NEIGHBOURHOODS = {
    4: [(-1, 0), (0, -1), (0, 1), (1, 0)],
    8: [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)],
}


def semantic_diffusion(
    u: torch.Tensor,
    v: torch.Tensor | None = None,
    steps: int = 10,
    alpha: float | Sequence[float] = 1.0,
    beta: float | Sequence[float] = 0.2,
    lam: float | torch.Tensor = 1.0,
    connectivity: int = 4,
) -> torch.Tensor:
    """Classical semantic diffusion solved by finite differences, Eq. 3–4.

    ``Ũ_m = sum_{n in N(m)} g(d2(V_n, V_m)) · (U_n - U_m)`` then ``U <- alpha_t · U + beta_t · Ũ``,
    ``steps`` times, with ``g`` the Perona–Malik diffusivity and ``d2`` the channel mean of
    ``(V_n - V_m)^2``. Neighbours outside the image contribute nothing (a Neumann boundary, so with
    ``alpha = 1`` the mean of ``U`` is preserved). ``v=None`` guides ``U`` by itself at every step,
    which is the classic Perona–Malik filter.

    Args:
        u: (N, C, H, W) or (C, H, W).
        v: guidance of the same spatial size, or None.
        steps: number of explicit steps T.
        alpha, beta: numbers or sequences of length ``steps`` (``alpha^t``, ``beta^t``).
        lam: edge threshold of g.
        connectivity: 4 or 8 neighbours.
    """
    if connectivity not in NEIGHBOURHOODS:
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    squeeze = u.dim() == 3
    if squeeze:
        u = u.unsqueeze(0)
        v = None if v is None else v.unsqueeze(0)
    if u.dim() != 4:
        raise ValueError(f"u must be (N, C, H, W) or (C, H, W), got shape {tuple(u.shape)}")
    if v is not None and (v.dim() != 4 or v.shape[0] != u.shape[0] or v.shape[2:] != u.shape[2:]):
        raise ValueError(
            f"v must match u in batch and spatial size: u {tuple(u.shape)}, v {tuple(v.shape)}"
        )
    _check_lam(lam)
    alphas = _per_step("alpha", alpha, steps)
    betas = _per_step("beta", beta, steps)
    offsets = NEIGHBOURHOODS[connectivity]
    if any(a == 1 and b * len(offsets) > 1 for a, b in zip(alphas, betas, strict=True)):
        warnings.warn(
            f"beta * |N| > 1 with alpha = 1 (beta={max(betas)}, |N|={len(offsets)}): the explicit "
            "scheme may be unstable; use beta <= 1/|N|",
            RuntimeWarning,
            stacklevel=2,
        )
    for a, b in zip(alphas, betas, strict=True):
        guide = u if v is None else v
        update = torch.zeros_like(u)
        for offset in offsets:
            g = perona_malik(shifted_difference(guide, offset).square().mean(1, keepdim=True), lam)
            update = update + g * shifted_difference(u, offset)
        u = a * u + b * update
    return u.squeeze(0) if squeeze else u


def _per_step(name: str, value: float | Sequence[float], steps: int) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * steps
    values = [float(x) for x in value]
    if len(values) != steps:
        raise ValueError(f"{name} has {len(values)} values but steps is {steps}")
    return values
