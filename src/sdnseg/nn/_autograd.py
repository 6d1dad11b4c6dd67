"""The fast CPU/CUDA path of the semantic difference convolution (Eq. 5), private.

Eq. 5 is split into two custom autograd functions that store only their inputs and recompute the
rest in backward, so the memory kept for backward stays close to a convolution's:

* :class:`NeighbourSquaredDistance` turns the guidance ``V`` into ``d2[:, k] = mean_f (V_{m+k} - V_m)^2``
  for every non-centre offset ``k`` (the centre offset never contributes: ``U_m - U_m = 0``).
* :class:`DifferenceConv` computes ``Y = sum_k W_k · S_k ⊙ (U_{m+k} - U_m)`` from ``U``, the similarity
  ``S`` (N, K, H, W) and the weight, as one matrix product plus shifted element-wise sums, in one of the
  two exact layouts of the module docstring of :mod:`sdnseg.nn.functional`.

The similarity ``S = f(d2, lam)`` sits between them in plain autograd: it is (N, K, H, W), small next
to (N, C, H, W) features, and any callable works without a hand-written derivative.

A neighbour outside the image contributes nothing: every shifted difference below is zero where the
neighbour falls outside, so no padding value of ``U`` or ``V`` ever enters the result.
"""

from __future__ import annotations

import torch

Offset = tuple[int, int]


def kernel_offsets(kernel_size: tuple[int, int], dilation: int) -> list[Offset]:
    """The (dy, dx) pixel offsets of a kh×kw dilated kernel, row-major, centre left out."""
    kh, kw = kernel_size
    return [
        ((i - kh // 2) * dilation, (j - kw // 2) * dilation)
        for i in range(kh)
        for j in range(kw)
        if not (i == kh // 2 and j == kw // 2)
    ]


def centre_index(kernel_size: tuple[int, int]) -> int:
    kh, kw = kernel_size
    return (kh // 2) * kw + kw // 2


def _regions(offset: Offset, height: int, width: int) -> tuple[tuple[slice, slice], ...] | None:
    """Slices (centre, neighbour) of the pixels m whose neighbour m + offset lies in the image."""
    dy, dx = offset
    if abs(dy) >= height or abs(dx) >= width:
        return None
    ys = slice(max(0, -dy), height - max(0, dy))
    xs = slice(max(0, -dx), width - max(0, dx))
    ys_n = slice(ys.start + dy, ys.stop + dy)
    xs_n = slice(xs.start + dx, xs.stop + dx)
    return (ys, xs), (ys_n, xs_n)


def shifted_difference(x: torch.Tensor, offset: Offset) -> torch.Tensor:
    """``x[..., m + offset] - x[..., m]``, zero where ``m + offset`` is outside the image."""
    out = torch.zeros_like(x)
    regions = _regions(offset, x.shape[-2], x.shape[-1])
    if regions is not None:
        (ys, xs), (ys_n, xs_n) = regions
        torch.sub(x[..., ys_n, xs_n], x[..., ys, xs], out=out[..., ys, xs])
    return out


def add_shifted_difference_adjoint_(out: torch.Tensor, g: torch.Tensor, offset: Offset) -> None:
    """``out += Dᵀ g`` where ``D`` is :func:`shifted_difference` at ``offset`` (in place)."""
    regions = _regions(offset, g.shape[-2], g.shape[-1])
    if regions is None:
        return
    (ys, xs), (ys_n, xs_n) = regions
    inner = g[..., ys, xs]
    out[..., ys_n, xs_n] += inner
    out[..., ys, xs] -= inner


class NeighbourSquaredDistance(torch.autograd.Function):
    """``d2[n, k, m] = mean_f (V[n, f, m + offset_k] - V[n, f, m])^2``; stores only ``V``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
        n, c, h, w = v.shape
        d2 = v.new_zeros(n, len(offsets), h, w)
        for k, offset in enumerate(offsets):
            regions = _regions(offset, h, w)
            if regions is None:
                continue
            (ys, xs), (ys_n, xs_n) = regions
            diff = v[:, :, ys_n, xs_n] - v[:, :, ys, xs]
            torch.mean(diff.square_(), dim=1, out=d2[:, k, ys, xs])
        ctx.save_for_backward(v)
        ctx.offsets = offsets
        return d2

    @staticmethod
    def backward(ctx, grad_d2: torch.Tensor):
        (v,) = ctx.saved_tensors
        grad_v = torch.zeros_like(v)
        scale = 2.0 / v.shape[1]
        for k, offset in enumerate(ctx.offsets):
            regions = _regions(offset, v.shape[-2], v.shape[-1])
            if regions is None:
                continue
            (ys, xs), (ys_n, xs_n) = regions
            diff = v[:, :, ys_n, xs_n] - v[:, :, ys, xs]
            diff.mul_(grad_d2[:, k : k + 1, ys, xs] * scale)
            grad_v[:, :, ys_n, xs_n] += diff
            grad_v[:, :, ys, xs] -= diff
        return grad_v, None


def _use_output_side_product(in_channels: int, out_channels: int) -> bool:
    """Layout (b), the product before the shifts, does its element-wise work at width Co.

    Layout (a) does it at width Ci; both do the same multiply-adds in the product, so the narrower
    side wins.
    """
    return out_channels <= in_channels


def _split_weight(weight: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
    """(Co, Ci, kh, kw) -> (K, Co, Ci) over the non-centre offsets."""
    co, ci, kh, kw = weight.shape
    keep = [i for i in range(kh * kw) if i != centre_index((kh, kw))]
    return weight.permute(2, 3, 0, 1).reshape(kh * kw, co, ci)[keep]


def _merge_weight_grad(grad_k: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """(K, Co, Ci) -> (Co, Ci, kh, kw) with a zero gradient at the centre tap."""
    kh, kw = kernel_size
    k, co, ci = grad_k.shape
    centre = centre_index(kernel_size)
    full = grad_k.new_zeros(kh * kw, co, ci)
    keep = [i for i in range(kh * kw) if i != centre]
    full[keep] = grad_k
    return full.reshape(kh, kw, co, ci).permute(2, 3, 0, 1).contiguous()


class DifferenceConv(torch.autograd.Function):
    """``Y = sum_k W_k · S_k ⊙ (U_{m+k} - U_m)``; stores ``U``, ``S`` and ``W``, recomputes the rest."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: list[Offset]):
        ctx.save_for_backward(u, s, weight)
        ctx.offsets = offsets
        w_k = _split_weight(weight, offsets)
        n, ci, h, w = u.shape
        co = weight.shape[0]
        if _use_output_side_product(ci, co):
            # (b): P_k = W_k U for all k in one product, then sum_k S_k ⊙ (shift_k P_k - P_k).
            p = torch.matmul(w_k.reshape(-1, ci), u.reshape(n, ci, h * w)).view(n, -1, co, h, w)
            y = u.new_zeros(n, co, h, w)
            for k, offset in enumerate(offsets):
                regions = _regions(offset, h, w)
                if regions is None:
                    continue
                (ys, xs), (ys_n, xs_n) = regions
                s_k = s[:, k : k + 1, ys, xs]
                y_r = y[:, :, ys, xs]
                y_r.addcmul_(p[:, k, :, ys_n, xs_n], s_k)
                y_r.addcmul_(p[:, k, :, ys, xs], s_k, value=-1.0)
            return y
        # (a): D = [S_k ⊙ (shift_k U - U)]_k as (K·Ci) rows, then one product with W.
        d = _weighted_differences(u, s, offsets)
        w_a = w_k.permute(1, 0, 2).reshape(co, -1)
        return torch.matmul(w_a, d.view(n, -1, h * w)).view(n, co, h, w)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        u, s, weight = ctx.saved_tensors
        offsets = ctx.offsets
        w_k = _split_weight(weight, offsets)
        n, ci, h, w = u.shape
        co = weight.shape[0]
        kk = len(offsets)
        grad_y = grad_y.contiguous()
        grad_s = torch.zeros_like(s)
        u_flat = u.reshape(n, ci, h * w)
        if _use_output_side_product(ci, co):
            p = torch.matmul(w_k.reshape(-1, ci), u_flat).view(n, kk, co, h, w)
            grad_p = torch.zeros_like(p)
            for k, offset in enumerate(offsets):
                regions = _regions(offset, h, w)
                if regions is None:
                    continue
                (ys, xs), (ys_n, xs_n) = regions
                g_r = grad_y[:, :, ys, xs]
                diff = p[:, k, :, ys_n, xs_n] - p[:, k, :, ys, xs]
                grad_s[:, k, ys, xs] = torch.linalg.vecdot(g_r, diff, dim=1)
                g_r = g_r * s[:, k : k + 1, ys, xs]
                grad_p[:, k, :, ys_n, xs_n] += g_r
                grad_p[:, k, :, ys, xs] -= g_r
            del p
            grad_p = grad_p.view(n, kk * co, h * w)
            grad_w_k = torch.matmul(grad_p, u_flat.transpose(1, 2)).sum(0).view(kk, co, ci)
            grad_u = torch.matmul(w_k.reshape(-1, ci).t(), grad_p).view(n, ci, h, w)
        else:
            w_a = w_k.permute(1, 0, 2).reshape(co, -1)
            d = _weighted_differences(u, s, offsets).view(n, kk * ci, h * w)
            g_flat = grad_y.view(n, co, h * w)
            grad_w_k = (
                torch.matmul(g_flat, d.transpose(1, 2)).sum(0).view(co, kk, ci).permute(1, 0, 2)
            )
            del d
            grad_d = torch.matmul(w_a.t(), g_flat).view(n, kk, ci, h, w)
            grad_u = torch.zeros_like(u)
            for k, offset in enumerate(offsets):
                regions = _regions(offset, h, w)
                if regions is None:
                    continue
                (ys, xs), (ys_n, xs_n) = regions
                g_r = grad_d[:, k, :, ys, xs]
                diff = u[:, :, ys_n, xs_n] - u[:, :, ys, xs]
                grad_s[:, k, ys, xs] = torch.linalg.vecdot(g_r, diff, dim=1)
                g_r = g_r * s[:, k : k + 1, ys, xs]
                grad_u[:, :, ys_n, xs_n] += g_r
                grad_u[:, :, ys, xs] -= g_r
        grad_weight = _merge_weight_grad(grad_w_k, (weight.shape[2], weight.shape[3]))
        return grad_u, grad_s, grad_weight, None


def _weighted_differences(u: torch.Tensor, s: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
    """(N, K, Ci, H, W) stack of ``S_k ⊙ (shift_k U - U)``, zero where the neighbour is outside."""
    n, ci, h, w = u.shape
    d = u.new_zeros(n, len(offsets), ci, h, w)
    for k, offset in enumerate(offsets):
        regions = _regions(offset, h, w)
        if regions is None:
            continue
        (ys, xs), (ys_n, xs_n) = regions
        d_r = d[:, k, :, ys, xs]
        torch.sub(u[:, :, ys_n, xs_n], u[:, :, ys, xs], out=d_r)
        d_r.mul_(s[:, k : k + 1, ys, xs])
    return d
