"""Triton path of the semantic difference convolution (Eq. 5 of Tan, Wu, Pi 2022), private.

Drop-in replacements, same signatures and semantics, for the two custom autograd functions of
:mod:`sdnseg.nn._gemm` (the dispatch of :mod:`sdnseg.nn._dispatch` routes CUDA tensors here):

* :func:`neighbour_squared_distance` ``(v, offsets) -> d2`` (N, K, H, W),
  ``d2[:, k, m] = mean_f (V_f(m + o_k) - V_f(m))^2``, zero where ``m + o_k`` is outside the image;
* :func:`difference_conv` ``(u, s, weight, offsets) -> y`` (N, Co, H, W),
  ``Y_m = sum_k W_k · S_k(m) · (U_{m+o_k} - U_m)``, zero term where the neighbour is outside,
  no bias; ``weight`` is (Co, Ci, kh, kw) and its centre tap gets a zero gradient.

Both are :class:`torch.autograd.Function` s whose forward and backward are Triton kernels
(:mod:`sdnseg.nn._triton_kernels`), accumulating in fp32 for float32, bfloat16 and float16 inputs.
Like the three-GEMM path they store only their inputs for backward (U, S, W; or V) and recompute
the rest; unlike it they never build chunks of the (K·C, pixels) tap stack, in forward or backward.

Memory layout: the kernels read features channels-last (a contiguous channel run per pixel), so
the wrappers make channels-last copies of U, V and dY when these are not channels-last already,
and return outputs in the memory format of the corresponding input.

fp32 dot products follow PyTorch's matmul setting: TF32 only when
``torch.backends.cuda.matmul.allow_tf32`` is on (off by default), IEEE fp32 otherwise.

Length: over ~400 lines because each kernel's launch wrapper sits beside its autograd function; the kernels themselves are in ``_triton_kernels``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from sdnseg.nn import _gemm

__all__ = [
    "SUPPORTED_DTYPES",
    "TritonDifferenceConv",
    "TritonNeighbourSquaredDistance",
    "difference_conv",
    "is_available",
    "kernels_interpreted",
    "neighbour_squared_distance",
    "supports",
]

Offset = tuple[int, int]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Split-K of the weight gradient over pixel ranges: aim for this many programs per SM, give each
# split at least this many pixels, and cap the fp32 workspace (splits × K × Ci × Co).
_WGRAD_PROGRAMS_PER_SM = 4
_WGRAD_MIN_PIXELS_PER_SPLIT = 1024
_WGRAD_MAX_WORKSPACE_BYTES = 256 << 20
# Tests set this to force a number of weight-gradient splits (exercises the two-stage reduction).
_wgrad_splits_override: int | None = None


def is_available() -> bool:
    """True when Triton imports and runs: on a CUDA device, or interpreted (TRITON_INTERPRET=1)."""
    try:
        import triton
    except ImportError:
        return False
    if torch.cuda.is_available():
        return True
    return bool(triton.knobs.runtime.interpret)


def _kernels() -> ModuleType:
    """The kernel module, imported on first use so that importing this module needs no Triton.

    Whether the kernels are compiled or interpreted is fixed when that module is imported (the
    ``@triton.jit`` decorator reads ``TRITON_INTERPRET`` then): see :func:`_reload_kernels`.
    """
    return importlib.import_module("sdnseg.nn._triton_kernels")


def _reload_kernels() -> ModuleType:
    """Re-decorate the kernels under the current ``TRITON_INTERPRET`` (for tests)."""
    return importlib.reload(_kernels())


def kernels_interpreted() -> bool:
    """Whether the kernels were decorated for the Triton interpreter."""
    return bool(_kernels().INTERPRET)


# --------------------------------------------------------------------------------------------
# Launch helpers


def _launch(name: str, grid: Callable[[dict[str, Any]], tuple[int, ...]], *args, **meta) -> None:
    """Launch kernel ``name``: autotuned on a GPU, else with the module's default tile sizes."""
    mod = _kernels()
    raw, tuned, config_name = mod.KERNELS[name]
    if tuned is not None and mod.autotune_enabled():
        tuned[grid](*args, **meta)
        return
    launch_meta = {**mod.DEFAULTS[config_name], **meta}
    raw[grid(launch_meta)](*args, **launch_meta)


def _device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager:
    # Triton launches on the current CUDA device; make it the tensors' device.
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


@functools.lru_cache(maxsize=64)
def _offsets_tensor_cached(offsets: tuple[Offset, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(offsets, dtype=torch.int32, device=device).reshape(-1, 2).contiguous()


def _offsets_tensor(offsets: Sequence[Offset], device: torch.device) -> torch.Tensor:
    """The (K, 2) int32 (dy, dx) table the kernels read; cached so it is copied to a GPU once."""
    key = tuple((int(dy), int(dx)) for dy, dx in offsets)
    return _offsets_tensor_cached(key, device)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """A channels-last view or copy: the kernels assume channel stride 1 (or a single channel)."""
    return x.contiguous(memory_format=torch.channels_last)


def _pixel_strides(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(2), x.stride(3)


def _like_format(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``result`` (channels-last) in ``reference``'s memory format, as the three-GEMM path returns."""
    if reference.is_contiguous(memory_format=torch.channels_last) and not reference.is_contiguous():
        return result
    return result.contiguous()


def _dot_options(dtype: torch.dtype) -> dict[str, Any]:
    """``DOT_F32``: interpreter workaround for 16-bit dots; ``PREC``: the fp32 dot precision."""
    interpreted = kernels_interpreted()
    if dtype == torch.float32:
        prec = "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"
    else:
        prec = "tf32"  # Triton's default; ignored for 16-bit operands.
    return {"DOT_F32": interpreted and dtype != torch.float32, "PREC": prec}


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels take this (N, C, H, W) tensor: its dtype and its per-image size."""
    return x.dtype in SUPPORTED_DTYPES and x.dim() == 4 and x[0].numel() < 2**31


def _check_feature(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(
            f"the Triton SDC path supports {SUPPORTED_DTYPES}, got {name} of dtype {x.dtype}"
        )
    # Within one image the kernels index in int32 (the batch offset is int64).
    if x[0].numel() >= 2**31:
        raise ValueError(f"{name} has {x[0].numel()} elements per image, over the int32 limit")


def _non_centre_taps(kh: int, kw: int) -> list[int]:
    """Row-major tap indices without the centre: the order of ``kernel_offsets``."""
    centre = (kh // 2) * kw + kw // 2
    return [i for i in range(kh * kw) if i != centre]


def _weight_t(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(Co, Ci, kh, kw) -> Wt (K, Ci, Co) contiguous, the non-centre taps in offset order."""
    co, ci, kh, kw = weight.shape
    taps = weight.to(dtype).permute(2, 3, 1, 0).reshape(kh * kw, ci, co)
    return taps[_non_centre_taps(kh, kw)].contiguous()


def _weight_grad(grad_wt: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(K, Ci, Co) fp32 -> (Co, Ci, kh, kw) in weight's dtype, zero at the (unused) centre tap."""
    co, ci, kh, kw = weight.shape
    full = grad_wt.new_zeros(kh * kw, ci, co)
    full[_non_centre_taps(kh, kw)] = grad_wt
    return full.reshape(kh, kw, ci, co).permute(3, 2, 0, 1).to(weight.dtype).contiguous()


# --------------------------------------------------------------------------------------------
# Neighbour squared distance


def _nsd_forward(v: torch.Tensor, offsets: Sequence[Offset]) -> torch.Tensor:
    n, c, h, w = v.shape
    k = len(offsets)
    d2 = torch.zeros((n, k, h, w), dtype=v.dtype, device=v.device)
    nhw = n * h * w
    if k == 0 or nhw == 0 or c == 0:
        return d2
    v_cl = _channels_last(v)
    with _device_guard(v):
        _launch(
            "nsd_fwd",
            lambda meta: (_cdiv(nhw, meta["BLOCK_M"]),),
            v_cl, d2, _offsets_tensor(offsets, v.device),
            nhw, h * w, h, w, c, k, 1.0 / c,
            *_pixel_strides(v_cl),
            *d2.stride(),
            BLOCK_KP=max(2, 1 << (k - 1).bit_length()),
        )  # fmt: skip
    return d2


def _nsd_backward(v: torch.Tensor, grad_d2: torch.Tensor, offsets: Sequence[Offset]):
    n, c, h, w = v.shape
    nhw = n * h * w
    v_cl = _channels_last(v)
    grad_v = torch.empty_like(v_cl, memory_format=torch.channels_last)
    if len(offsets) == 0 or nhw == 0 or c == 0:
        return _like_format(grad_v.zero_(), v)
    with _device_guard(v):
        _launch(
            "nsd_bwd",
            lambda meta: (_cdiv(nhw, meta["BLOCK_M"]), _cdiv(c, meta["BLOCK_C"])),
            v_cl, grad_d2, grad_v, _offsets_tensor(offsets, v.device),
            nhw, h * w, h, w, c, len(offsets), 2.0 / c,
            *_pixel_strides(v_cl),
            *grad_d2.stride(),
            *_pixel_strides(grad_v),
        )  # fmt: skip
    return _like_format(grad_v, v)


class TritonNeighbourSquaredDistance(torch.autograd.Function):
    """``d2[n, k, m] = mean_f (V[n, f, m + o_k] - V[n, f, m])^2`` (the S input of Eq. 5).

    Stores only ``V``; backward gathers ``dV`` per pixel (no atomics).
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
        _check_feature("v", v)
        ctx.save_for_backward(v)
        ctx.offsets = list(offsets)
        return _nsd_forward(v, offsets)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_d2: torch.Tensor):
        (v,) = ctx.saved_tensors
        return _nsd_backward(v, grad_d2, ctx.offsets), None


def neighbour_squared_distance(v: torch.Tensor, offsets: Sequence[Offset]) -> torch.Tensor:
    """Triton twin of ``_gemm.neighbour_squared_distance(v, offsets)``: (N, K, H, W), v's dtype.

    Inputs the kernels do not take (float64, over 2^31 elements per image) go to the PyTorch
    three-GEMM path, so a backend switch may route every CUDA tensor here.
    """
    if not supports(v):
        return _gemm.neighbour_squared_distance(v, offsets)
    return TritonNeighbourSquaredDistance.apply(v, list(offsets))


# --------------------------------------------------------------------------------------------
# Difference convolution


def _check_dc_args(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> None:
    _check_feature("u", u)
    n, ci, h, w = u.shape
    if weight.dim() != 4 or weight.shape[1] != ci:
        raise ValueError(
            f"weight must be (Co, {ci}, kh, kw) for u {tuple(u.shape)}, got {tuple(weight.shape)}"
        )
    kh, kw = weight.shape[2:]
    if kh * kw - 1 != len(offsets):
        raise ValueError(f"{len(offsets)} offsets for a {kh}×{kw} kernel (need {kh * kw - 1})")
    if tuple(s.shape) != (n, len(offsets), h, w):
        raise ValueError(
            f"s must be (N, K, H, W) = {(n, len(offsets), h, w)}, got {tuple(s.shape)}"
        )
    if s.dtype not in SUPPORTED_DTYPES or not weight.is_floating_point():
        raise ValueError(f"s ({s.dtype}) and weight ({weight.dtype}) must be float16/32 or bf16")
    if s.device != u.device or weight.device != u.device:
        raise ValueError(f"u, s, weight on {u.device}, {s.device}, {weight.device}")


def _dc_forward(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> torch.Tensor:
    n, ci, h, w = u.shape
    co = weight.shape[0]
    k = len(offsets)
    nhw = n * h * w
    y = torch.empty(
        (n, co, h, w), dtype=u.dtype, device=u.device, memory_format=torch.channels_last
    )
    if k == 0 or nhw == 0 or ci == 0 or co == 0:
        return _like_format(y.zero_(), u)
    u_cl = _channels_last(u)
    wt = _weight_t(weight, u.dtype)
    with _device_guard(u):
        _launch(
            "dc_fwd",
            lambda meta: (_cdiv(nhw, meta["BLOCK_M"]), _cdiv(co, meta["BLOCK_N"])),
            u_cl, s, wt, y, _offsets_tensor(offsets, u.device),
            nhw, h * w, h, w, ci, co, k,
            *_pixel_strides(u_cl),
            *s.stride(),
            *_pixel_strides(y),
            **_dot_options(u.dtype),
        )  # fmt: skip
    return _like_format(y, u)


def _wgrad_splits(nhw: int, k: int, ci: int, co: int, sms: int) -> int:
    """Number of pixel ranges the weight gradient is split into (its grid has few tiles)."""
    if _wgrad_splits_override is not None:
        return max(1, min(_wgrad_splits_override, nhw))
    tiles = _cdiv(ci, 128) * _cdiv(co, 128) * k  # the largest tile config: fewest programs
    want = _cdiv(_WGRAD_PROGRAMS_PER_SM * sms, tiles)
    by_pixels = max(1, nhw // _WGRAD_MIN_PIXELS_PER_SPLIT)
    by_memory = max(1, _WGRAD_MAX_WORKSPACE_BYTES // (4 * k * ci * co))
    return max(1, min(want, by_pixels, by_memory))


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


def _dc_backward(
    u: torch.Tensor,
    s: torch.Tensor,
    weight: torch.Tensor,
    offsets: Sequence[Offset],
    grad_y: torch.Tensor,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    n, ci, h, w = u.shape
    co = weight.shape[0]
    k = len(offsets)
    nhw = n * h * w
    need_u, need_s, need_w = needs
    if k == 0 or nhw == 0 or ci == 0 or co == 0:
        return (
            torch.zeros_like(u) if need_u else None,
            torch.zeros_like(s) if need_s else None,
            torch.zeros_like(weight) if need_w else None,
        )
    u_cl = _channels_last(u)
    g_cl = _channels_last(grad_y.to(u.dtype))
    wt = _weight_t(weight, u.dtype)
    offs = _offsets_tensor(offsets, u.device)
    dot = _dot_options(u.dtype)
    grad_u = grad_s = grad_w = None
    with _device_guard(u):
        if need_u:
            grad_u = torch.empty_like(u_cl, memory_format=torch.channels_last)
            _launch(
                "dc_bwd_u",
                lambda meta: (_cdiv(nhw, meta["BLOCK_M"]), _cdiv(ci, meta["BLOCK_N"])),
                g_cl, s, wt, grad_u, offs,
                nhw, h * w, h, w, ci, co, k,
                *_pixel_strides(g_cl),
                *s.stride(),
                *_pixel_strides(grad_u),
                **dot,
            )  # fmt: skip
            grad_u = _like_format(grad_u, u)
        if need_s:
            grad_s = torch.empty((n, k, h, w), dtype=s.dtype, device=s.device)
            _launch(
                "dc_bwd_s",
                lambda meta: (_cdiv(nhw, meta["BLOCK_M"]), k),
                u_cl, g_cl, wt, grad_s, offs,
                nhw, h * w, h, w, ci, co,
                *_pixel_strides(u_cl),
                *_pixel_strides(g_cl),
                *grad_s.stride(),
                **dot,
            )  # fmt: skip
        if need_w:
            splits = _wgrad_splits(nhw, k, ci, co, _sm_count(u.device))
            per_split = _cdiv(nhw, splits)
            splits = _cdiv(nhw, per_split)
            ws = torch.empty((splits, k, ci, co), dtype=torch.float32, device=u.device)
            _launch(
                "dc_bwd_w",
                lambda meta: (
                    _cdiv(ci, meta["BLOCK_CI"]) * _cdiv(co, meta["BLOCK_CO"]),
                    k,
                    splits,
                ),
                u_cl, s, g_cl, ws, offs,
                nhw, h * w, h, w, ci, co, k, per_split,
                *_pixel_strides(u_cl),
                *s.stride(),
                *_pixel_strides(g_cl),
                **dot,
            )  # fmt: skip
            grad_wt = ws[0] if splits == 1 else ws.sum(0)
            grad_w = _weight_grad(grad_wt, weight)
    return grad_u, grad_s, grad_w


class TritonDifferenceConv(torch.autograd.Function):
    """``Y = sum_k W_k · S_k ⊙ (U_{m+o_k} - U_m)`` (Eq. 5 given S); stores ``U``, ``S``, ``W``.

    Forward is one implicit GEMM; backward runs one kernel per requested gradient (U: transposed
    implicit GEMM; S: fused GEMM + reduction against dY; W: split-K GEMM over pixels).
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: list[Offset]):
        _check_dc_args(u, s, weight, offsets)
        ctx.save_for_backward(u, s, weight)
        ctx.offsets = list(offsets)
        return _dc_forward(u, s, weight, offsets)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        u, s, weight = ctx.saved_tensors
        grads = _dc_backward(u, s, weight, ctx.offsets, grad_y, tuple(ctx.needs_input_grad[:3]))
        return (*grads, None)


def difference_conv(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> torch.Tensor:
    """Triton twin of ``_gemm.difference_conv(u, s, weight, offsets)``: (N, Co, H, W), u's dtype.

    Inputs the kernels do not take (float64, over 2^31 elements per image) go to the PyTorch
    three-GEMM path, so a backend switch may route every CUDA tensor here.
    """
    if not (supports(u) and supports(s)):
        return _gemm.difference_conv(u, s, weight, offsets)
    return TritonDifferenceConv.apply(u, s, weight, list(offsets))
