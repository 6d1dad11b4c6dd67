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

Both take a last argument ``compile`` (default False), chosen by :mod:`sdnseg.nn._dispatch`: run the
element-wise kernels through ``torch.compile`` (see :func:`_kernel`); backward follows forward.

A neighbour outside the image contributes nothing: inputs are zero-padded for the shifts, and the
similarity (and ``d2``) is multiplied by :func:`inside_mask`, so no padding value of ``U`` or ``V``
ever enters the result or its gradients.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

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


class NeighbourSquaredDistance(torch.autograd.Function):
    """``d2[n, k, m] = mean_f (V[n, f, m + offset_k] - V[n, f, m])^2``; stores only ``V``.

    Zero where the neighbour is outside the image.
    """

    @staticmethod
    def forward(ctx, v: torch.Tensor, offsets: list[Offset], compile: bool = False) -> torch.Tensor:
        ctx.save_for_backward(v)
        ctx.offsets, ctx.compile = offsets, compile
        n, c, h, w = v.shape
        vpad = _pad(v, *_radius(offsets))
        d2 = _kernel(_squared_distances, compile)(vpad, offsets)
        return d2 * inside_mask(offsets, h, w, v)

    @staticmethod
    def backward(ctx, grad_d2: torch.Tensor):
        (v,) = ctx.saved_tensors
        offsets = ctx.offsets
        n, c, h, w = v.shape
        g = grad_d2 * inside_mask(offsets, h, w, v)
        vpad = _pad(v, *_radius(offsets))
        return _kernel(_grad_of_squared_distances, ctx.compile)(vpad, g, offsets), None, None


def _use_output_side_product(in_channels: int, out_channels: int) -> bool:
    """Layout (b), the product before the shifts, does its element-wise work at width Co.

    Layout (a) does it at width Ci; both do the same multiply-adds in the product, so the narrower
    side wins.
    """
    return out_channels <= in_channels


def _split_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, kh, kw) -> (K, Co, Ci) over the non-centre offsets."""
    co, ci, kh, kw = weight.shape
    keep = [i for i in range(kh * kw) if i != centre_index((kh, kw))]
    return weight.permute(2, 3, 0, 1).reshape(kh * kw, co, ci)[keep]


def _merge_weight_grad(grad_k: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """(K, Co, Ci) -> (Co, Ci, kh, kw) with a zero gradient at the centre tap."""
    kh, kw = kernel_size
    _, co, ci = grad_k.shape
    centre = centre_index(kernel_size)
    full = grad_k.new_zeros(kh * kw, co, ci)
    keep = [i for i in range(kh * kw) if i != centre]
    full[keep] = grad_k
    return full.reshape(kh, kw, co, ci).permute(2, 3, 0, 1).contiguous()


# --- element-wise kernels ------------------------------------------------------------------
# Written over zero-padded inputs with static slices only, so that torch.compile can fuse each
# into one pass over memory; in eager mode they are the same arithmetic, just slower.


def _radius(offsets: list[Offset]) -> tuple[int, int]:
    return max(abs(dy) for dy, _ in offsets), max(abs(dx) for _, dx in offsets)


def _pad(x: torch.Tensor, ry: int, rx: int) -> torch.Tensor:
    return F.pad(x, (rx, rx, ry, ry))


def _window(xpad: torch.Tensor, base: tuple[int, int], offset: Offset, size: tuple[int, int]):
    """``x[m + offset]`` for ``x`` zero-padded by ``base``, over an output of ``size``."""
    (by, bx), (dy, dx), (h, w) = base, offset, size
    return xpad[..., by + dy : by + dy + h, bx + dx : bx + dx + w]


def inside_mask(offsets: list[Offset], h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, K, H, W): 1 where the neighbour ``m + offset_k`` lies in the image."""
    ry, rx = _radius(offsets)
    ones = _pad(like.new_ones(1, 1, h, w), ry, rx)
    return torch.cat([_window(ones, (ry, rx), o, (h, w)) for o in offsets], 1)


def _sum_weighted_differences(p, s, offsets: list[Offset]):
    """``sum_k s_k ⊙ (p_k[m + off_k] - p_k[m])`` for p (N, K, C, Hp, Wp) padded, s (N, K, H, W)."""
    r, size = _radius(offsets), s.shape[-2:]
    y = None
    for k, off in enumerate(offsets):
        p_k = p[:, k]
        term = s[:, k : k + 1] * (_window(p_k, r, off, size) - _window(p_k, r, (0, 0), size))
        y = term if y is None else y + term
    return y


def _weighted_differences(upad, s, offsets: list[Offset]):
    """(N, K, Ci, H, W) stack of ``s_k ⊙ (u[m + off_k] - u[m])`` for u padded by the radius."""
    r, size = _radius(offsets), s.shape[-2:]
    centre = _window(upad, r, (0, 0), size)
    return torch.stack(
        [s[:, k : k + 1] * (_window(upad, r, off, size) - centre) for k, off in enumerate(offsets)],
        1,
    )


def _squared_distances(vpad, offsets: list[Offset]):
    """(N, K, H, W) channel means of ``(v[m + off_k] - v[m])^2`` for v padded by the radius."""
    (ry, rx) = r = _radius(offsets)
    size = (vpad.shape[-2] - 2 * ry, vpad.shape[-1] - 2 * rx)
    centre = _window(vpad, r, (0, 0), size)
    return torch.stack([(_window(vpad, r, o, size) - centre).square().mean(1) for o in offsets], 1)


def _grad_of_squared_distances(vpad, g, offsets: list[Offset]):
    """Backward of :func:`_squared_distances` given ``g = dL/dd2`` (zero outside): dL/dv."""
    (ry, rx) = r = _radius(offsets)
    size = g.shape[-2:]
    centre = _window(vpad, r, (0, 0), size)
    scale = 2.0 / vpad.shape[1]
    grad = None
    for k, (dy, dx) in enumerate(offsets):
        t_k = (scale * g[:, k : k + 1]) * (_window(vpad, r, (dy, dx), size) - centre)
        term = _window(_pad(t_k, ry, rx), r, (-dy, -dx), size) - t_k
        grad = term if grad is None else grad + term
    return grad


def _grads_through_differences(g, upad, s, offsets: list[Offset]):
    """Backward of ``D = s ⊙ ΔU`` given ``g = dL/dD`` (N, K, Ci, H, W): (dL/ds, dL/du)."""
    r, size = _radius(offsets), s.shape[-2:]
    centre = _window(upad, r, (0, 0), size)
    grad_s, grad_u = [], None
    for k, (dy, dx) in enumerate(offsets):
        g_k = g[:, k]
        grad_s.append((g_k * (_window(upad, r, (dy, dx), size) - centre)).sum(1))
        t_k = s[:, k : k + 1] * g_k
        # u[q] received t_k at m = q - offset (+) and at m = q (-).
        term = _window(_pad(t_k, *r), r, (-dy, -dx), size) - t_k
        grad_u = term if grad_u is None else grad_u + term
    return torch.stack(grad_s, 1), grad_u


def _grads_through_products(gy, p, s, offsets: list[Offset]):
    """Backward of ``Y = sum_k s_k ⊙ Δ_k P_k`` given ``gy = dL/dY``: (dL/ds, dL/dP on the padded grid)."""
    (ry, rx), size = _radius(offsets), s.shape[-2:]
    hp, wp = p.shape[-2:]
    grad_s, grad_p = [], []
    for k, (dy, dx) in enumerate(offsets):
        p_k = p[:, k]
        diff = _window(p_k, (ry, rx), (dy, dx), size) - _window(p_k, (ry, rx), (0, 0), size)
        grad_s.append((gy * diff).sum(1))
        t_k = s[:, k : k + 1] * gy
        # P[q] on the padded grid received t_k at m = q - r - offset (+) and at m = q - r (-).
        far = _window(_pad(t_k, 2 * ry, 2 * rx), (ry, rx), (-dy, -dx), (hp, wp))
        grad_p.append(far - _pad(t_k, ry, rx))
    return torch.stack(grad_s, 1), torch.stack(grad_p, 1)


_compiled: dict = {}
log = logging.getLogger(__name__)


def _kernel(fn, compile: bool):
    """``fn``, or its ``torch.compile``'d form when the dispatch opted in (:mod:`._dispatch`).

    Each kernel compiles once, for all shapes (``dynamic=True``), on its first use; a failed
    compilation falls back to eager for good.
    """
    if not compile:
        return fn
    compiled = _compiled.get(fn)
    if compiled is None:
        log.info("SDC: torch.compile of the kernel %s (once, for all shapes)", fn.__name__)
        compiled = torch.compile(fn, dynamic=True)

        def guarded(*args, _compiled_fn=compiled):
            try:
                return _compiled_fn(*args)
            except Exception as error:  # noqa: BLE001 - any compiler failure means: run eager
                log.warning("torch.compile of %s failed (%s); using eager", fn.__name__, error)
                _compiled[fn] = fn
                return fn(*args)

        _compiled[fn] = compiled = guarded
    return compiled


class DifferenceConv(torch.autograd.Function):
    """``Y = sum_k W_k · S_k ⊙ (U_{m+k} - U_m)``; stores ``U``, ``S`` and ``W``, recomputes the rest.

    Forward uses layout (b) when Co <= Ci, else (a). Backward uses (a) unless Co <= Ci / 2: it
    needs two products (``W^T dY`` and ``dY D^T``) where (b) needs three (recomputing ``P``).
    """

    @staticmethod
    def forward(
        ctx,
        u: torch.Tensor,
        s: torch.Tensor,
        weight: torch.Tensor,
        offsets: list[Offset],
        compile: bool = False,
    ):
        ctx.save_for_backward(u, s, weight)
        ctx.offsets, ctx.compile = offsets, compile
        n, ci, h, w = u.shape
        co = weight.shape[0]
        w_k = _split_weight(weight)
        s_in = s * inside_mask(offsets, h, w, s)
        upad = _pad(u, *_radius(offsets))
        if _use_output_side_product(ci, co):
            hp, wp = upad.shape[-2:]
            p = torch.matmul(w_k.reshape(-1, ci), upad.reshape(n, ci, hp * wp))
            p = p.view(n, -1, co, hp, wp)
            return _kernel(_sum_weighted_differences, compile)(p, s_in, offsets)
        d = _kernel(_weighted_differences, compile)(upad, s_in, offsets)
        w_a = w_k.permute(1, 0, 2).reshape(co, -1)
        return torch.matmul(w_a, d.view(n, -1, h * w)).view(n, co, h, w)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        u, s, weight = ctx.saved_tensors
        offsets = ctx.offsets
        n, ci, h, w = u.shape
        co, kk = weight.shape[0], len(offsets)
        ry, rx = _radius(offsets)
        w_k = _split_weight(weight)
        inside = inside_mask(offsets, h, w, s)
        s_in = s * inside
        upad = _pad(u, ry, rx)
        hp, wp = upad.shape[-2:]
        grad_y = grad_y.contiguous()
        if 2 * co <= ci:
            p = torch.matmul(w_k.reshape(-1, ci), upad.reshape(n, ci, hp * wp))
            p = p.view(n, kk, co, hp, wp)
            kernel = _kernel(_grads_through_products, ctx.compile)
            grad_s, grad_p = kernel(grad_y, p, s_in, offsets)
            del p
            grad_p = grad_p.reshape(n, kk * co, hp * wp)
            upad_t = upad.reshape(n, ci, hp * wp).transpose(1, 2)
            grad_w_k = torch.matmul(grad_p, upad_t).sum(0).view(kk, co, ci)
            grad_upad = torch.matmul(w_k.reshape(-1, ci).t(), grad_p).view(n, ci, hp, wp)
            grad_u = grad_upad[..., ry : ry + h, rx : rx + w]
        else:
            w_a = w_k.permute(1, 0, 2).reshape(co, -1)
            g_flat = grad_y.view(n, co, h * w)
            g = torch.matmul(w_a.t(), g_flat).view(n, kk, ci, h, w)
            kernel = _kernel(_grads_through_differences, ctx.compile)
            grad_s, grad_u = kernel(g, upad, s_in, offsets)
            del g
            d = _kernel(_weighted_differences, ctx.compile)(upad, s_in, offsets)
            d = d.view(n, kk * ci, h * w)
            grad_w_a = torch.matmul(g_flat, d.transpose(1, 2)).sum(0)
            grad_w_k = grad_w_a.view(co, kk, ci).permute(1, 0, 2)
        grad_weight = _merge_weight_grad(grad_w_k, (weight.shape[2], weight.shape[3]))
        return grad_u, grad_s * inside, grad_weight, None, None
