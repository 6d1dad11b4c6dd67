"""The PyTorch path of the semantic difference convolution (Eq. 5): convolution's three GEMMs.

Eq. 5, ``Y_m = sum_k W_k · S_k(m) · (U(m+o_k) - U(m))``, runs over the non-centre taps ``k`` (the
centre multiplies ``U_m - U_m = 0``). With the tap differences ``ΔU_k(m) = U(m+o_k) - U(m)``, zero
where ``m + o_k`` is outside the image, and ``D_k(m) = S_k(m) · ΔU_k(m)`` stacked over the taps
into a column of length ``K·Ci``, it is one matrix product ``Y = W_cat · D`` with ``W_cat``
(Co, K·Ci): the GEMM of a convolution with one tap fewer. Backward is a convolution's other two
GEMMs plus element-wise work:

* ``G = W_catᵀ · dY`` and ``dW = dY · Dᵀ``;
* ``dU(m) = sum_k S_k(m - o_k) · G_k(m - o_k) - S_k(m) · G_k(m)``, a scatter into the neighbours;
* ``dS_k(m) = <G_k(m), ΔU_k(m)>``, then ``dV`` and ``dλ`` through the similarity
  ``S = f(d2, λ)`` with ``d2_k(m) = |V(m+o_k) - V(m)|^2 / Cf`` (the same scatter for ``dV``).

D never exists whole. It is built for one chunk of pixels at a time (a band of rows of one image,
or several whole small images), sized to stay in cache (``CHUNK_BYTES`` of :mod:`sdnseg.nn._tap_stacks`), multiplied with
``torch.mm``/``addmm`` (MKL or OpenBLAS does the heavy part) and dropped; backward builds it
again. Saved for backward: the inputs and ``d2`` (N, K, H, W), from which S and its derivatives
are recomputed; the derivative of any similarity callable comes from autograd on that small tensor.

Without the difference. The similarity-weighted convolution ``Y_m = sum_k W_k · S_k(m) · U(m+o_k)``
(the fourth cell of the Table 3(a) factorial, :func:`semantic_conv`) is the same product with
``D_k(m) = S_k(m) · U(m+o_k)`` over all kh×kw taps, the centre included (its ``d2`` is 0, so
``S = g(0) = 1``): one flag, ``difference``, changes the gather (``U(m+o_k)`` for ``ΔU_k``), its
adjoint (no ``- S_k(m) · G_k(m)`` term in ``dU``) and keeps the centre column of ``W_cat``.

Layout: chunks are channel-major, (K, C, pixels), so that for NCHW features (the networks' layout)
the GEMMs read dY and write Y in place as (C, pixels) matrices, without transposes; other layouts
work through strided views. Borders: ``ΔU_k`` and ``ΔV_k`` are written only where ``m + o_k`` is
inside; elsewhere the chunk buffers hold zeros, so D, d2 and dS vanish there without a mask and no
padded copy of U or V is made. Precision: float64 stays float64; float32, bfloat16 and float16 are
computed in float32 and rounded to the input dtype once, at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

from sdnseg.nn import _tap_stacks as ts
from sdnseg.nn._tap_stacks import Offset

SimilarityFn = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]


def semantic_difference_conv(
    u: torch.Tensor,
    v: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: Sequence[Offset],
    similarity: SimilarityFn | None,
    lam: torch.Tensor | float,
) -> torch.Tensor:
    """Eq. 5 with ``S = similarity(d2(V), lam)``, or ``S ≡ 1`` for ``similarity=None`` (V unused).

    ``offsets`` are :func:`kernel_offsets` of ``weight``'s kernel; bias is added in the GEMM.
    """
    return _apply_similarity(u, v, weight, bias, offsets, similarity, lam, difference=True)


def semantic_conv(
    u: torch.Tensor,
    v: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: Sequence[Offset],
    similarity: SimilarityFn | None,
    lam: torch.Tensor | float,
) -> torch.Tensor:
    """``Y_m = sum_k W_k · S_k(m) · U(m+o_k) (+ bias)``, ``S = similarity(d2(V), lam)`` or ``S ≡ 1``
    (then a zero-padded ``conv2d``).

    ``offsets`` are ``kernel_offsets(..., centre=True)`` of ``weight``'s kernel: every tap.
    """
    return _apply_similarity(u, v, weight, bias, offsets, similarity, lam, difference=False)


def _apply_similarity(u, v, weight, bias, offsets, similarity, lam, difference: bool):
    if similarity is None:
        return _SDC.apply(u, None, weight, bias, None, "ones", None, list(offsets), difference)
    return _SDC.apply(u, v, weight, bias, lam, "similarity", similarity, list(offsets), difference)


def difference_conv(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> torch.Tensor:
    """Eq. 5 given S (N, K, H, W): ``sum_k W_k · S_k ⊙ (U(m+o_k) - U(m))``, no bias.

    S where the neighbour is outside never enters Y (if finite) and gets a zero gradient.
    """
    return _SDC.apply(u, s, weight, None, None, "given", None, list(offsets), True)


def neighbour_squared_distance(v: torch.Tensor, offsets: Sequence[Offset]) -> torch.Tensor:
    """``d2[:, k, m] = |V(m+o_k) - V(m)|^2 / Cf`` (N, K, H, W), zero where the neighbour is outside."""
    return _SquaredDistance.apply(v, list(offsets))


# --- the three GEMMs and the element-wise work, chunk by chunk --------------------------------


def _forward(
    u: torch.Tensor,
    s: torch.Tensor | None,
    w_cat: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: list[Offset],
    y: torch.Tensor,
    difference: bool,
) -> None:
    """``y = W_cat · (S ⊙ ΔU) (+ bias)`` into ``y`` (N, Co, H, W); ``s`` None: S ≡ 1;
    ``difference=False``: ``U(m+o_k)`` for ``ΔU``."""
    n, ci, h, w = u.shape
    k, co = len(offsets), w_cat.shape[0]
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, ci, u))
    stacks = ts.TapStacks(k, ci, u, chunks, scratch=False)
    for c in chunks:
        d = stacks(c)
        ts.differences(u, c, offsets, d, difference)
        if s is not None:
            d.mul_(ts.part(s, c).unsqueeze(1))
        out = ts.as_matrix(ts.part(y, c))
        target = out if out is not None else y.new_empty(co, d[0, 0].numel())
        if bias is None:
            torch.mm(w_cat, d.view(k * ci, -1), out=target)
        else:
            torch.addmm(bias.unsqueeze(1), w_cat, d.view(k * ci, -1), out=target)
        if out is None:
            ts.part(y, c).copy_(target.view_as(ts.part(y, c)))


def _backward(
    u: torch.Tensor,
    s: torch.Tensor | None,
    s_inside: torch.Tensor,
    w_cat: torch.Tensor,
    grad_y: torch.Tensor,
    offsets: list[Offset],
    needs: tuple[bool, bool, bool, bool],
    difference: bool,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of :func:`_forward` into (U, S, W_cat, bias), those that ``needs`` asks for.

    ``s_inside`` is S (or ones) times the inside mask: ``dU`` scatters ``S ⊙ G`` only from taps
    whose neighbour is inside.
    """
    need_u, need_s, need_w, need_b = needs
    n, ci, h, w = u.shape
    k, co = len(offsets), w_cat.shape[0]
    grad_u = torch.zeros_like(u) if need_u else None
    grad_s = u.new_empty(n, k, h, w) if need_s else None
    grad_w = w_cat.new_zeros(co, k * ci) if need_w else None
    grad_b = w_cat.new_zeros(co) if need_b else None
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, ci, u))
    stacks = ts.TapStacks(k, ci, u, chunks, scratch=True)
    for c in chunks:
        g = ts.part(grad_y, c).reshape(co, -1)
        if need_b:
            grad_b += g.sum(1)
        if not (need_u or need_s or need_w):
            continue
        diff = stacks(c)
        shape = diff.shape
        if need_s or need_w:
            ts.differences(u, c, offsets, diff, difference)
        scratch = stacks.scratch_like(diff)
        if need_w:
            d = diff if s is None else torch.mul(diff, ts.part(s, c).unsqueeze(1), out=scratch)
            grad_w.addmm_(g, d.view(k * ci, -1).t())
        if need_u or need_s:
            gk = torch.mm(w_cat.t(), g, out=scratch.view(k * ci, -1)).view(shape)
            if need_s:
                torch.sum(diff.mul_(gk), 1, out=ts.part(grad_s, c))
            if need_u:
                ts.scatter_differences(
                    grad_u, c, offsets, gk.mul_(ts.part(s_inside, c).unsqueeze(1)), difference
                )
    return grad_u, grad_s, grad_w, grad_b


def _squared_distances(v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
    n, cf, h, w = v.shape
    k = len(offsets)
    d2 = v.new_empty(n, k, h, w)
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, cf, v))
    stacks = ts.TapStacks(k, cf, v, chunks, scratch=False)
    for c in chunks:
        diff = stacks(c)
        ts.differences(v, c, offsets, diff)
        torch.sum(diff.square_(), 1, out=ts.part(d2, c))
    return d2.div_(cf)


def _squared_distances_backward(
    v: torch.Tensor, grad_d2: torch.Tensor, offsets: list[Offset]
) -> torch.Tensor:
    n, cf, h, w = v.shape
    k = len(offsets)
    grad_v = torch.zeros_like(v)
    coef = grad_d2 * (2.0 / cf)
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, cf, v))
    stacks = ts.TapStacks(k, cf, v, chunks, scratch=False)
    for c in chunks:
        diff = stacks(c)
        ts.differences(v, c, offsets, diff)
        ts.scatter_differences(grad_v, c, offsets, diff.mul_(ts.part(coef, c).unsqueeze(1)))
    return grad_v


# --- autograd functions ------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _kept_taps(weight: torch.Tensor, centre: bool) -> list[int]:
    kh, kw = weight.shape[2:]
    return [i for i in range(kh * kw) if centre or i != (kh // 2) * kw + kw // 2]


def _stack_weight(weight: torch.Tensor, centre: bool) -> torch.Tensor:
    """(Co, Ci, kh, kw) -> W_cat (Co, K·Ci) over the non-centre taps (all with ``centre``),
    tap-major."""
    co, ci, kh, kw = weight.shape
    keep = _kept_taps(weight, centre)
    return weight.permute(0, 2, 3, 1).reshape(co, kh * kw, ci)[:, keep].reshape(co, -1)


def _unstack_weight_grad(grad: torch.Tensor, weight: torch.Tensor, centre: bool) -> torch.Tensor:
    """(Co, K·Ci) -> (Co, Ci, kh, kw); without ``centre`` zero at the centre tap (it multiplies
    ``U_m - U_m``)."""
    co, ci, kh, kw = weight.shape
    keep = _kept_taps(weight, centre)
    full = grad.new_zeros(co, kh * kw, ci)
    full[:, keep] = grad.view(co, len(keep), ci)
    return full.view(co, kh, kw, ci).permute(0, 3, 1, 2).contiguous()


def _similarity(fn: SimilarityFn, d2: torch.Tensor, lam: torch.Tensor | float) -> torch.Tensor:
    s = fn(d2, lam)
    if s.shape != d2.shape:
        raise ValueError(
            f"similarity callable must return the shape of d2 {tuple(d2.shape)}, got {tuple(s.shape)}"
        )
    return s.to(d2.dtype)


def _cast(grad: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    return None if grad is None or like is None else grad.to(like.dtype)


class _SDC(torch.autograd.Function):
    """Eq. 5 as three GEMMs; saves the inputs and, for a similarity, d2 (N, K, H, W).

    ``mode``: ``"similarity"`` (``guide`` is V, ``S = similarity(d2, lam)``), ``"given"``
    (``guide`` is S) or ``"ones"`` (S ≡ 1, no guide). ``difference``: Eq. 5 over the non-centre
    offsets, else the similarity-weighted convolution over every offset (centre included).
    """

    @staticmethod
    def forward(ctx, u, guide, weight, bias, lam, mode, similarity, offsets, difference):
        dtype = _compute_dtype(u.dtype)
        n, _, h, w = u.shape
        u_c = u.to(dtype)
        d2 = s = None
        if mode == "similarity":
            d2 = _squared_distances(guide.to(dtype), offsets)
            s = _similarity(similarity, d2, lam.to(dtype) if torch.is_tensor(lam) else lam)
        elif mode == "given":
            s = guide.to(dtype)
        y = torch.empty(
            n, weight.shape[0], h, w, dtype=dtype, device=u.device, memory_format=_memory_format(u)
        )
        bias_c = None if bias is None else bias.to(dtype)
        w_cat = _stack_weight(weight.to(dtype), centre=not difference)
        _forward(u_c, s, w_cat, bias_c, offsets, y, difference)
        lam_tensor = lam if torch.is_tensor(lam) else None
        ctx.save_for_backward(u, guide, weight, bias, lam_tensor, d2)
        ctx.mode, ctx.similarity, ctx.offsets, ctx.lam = mode, similarity, offsets, lam
        ctx.difference = difference
        return y.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        u, guide, weight, bias, lam, d2 = ctx.saved_tensors
        need_u, need_guide, need_w, need_b, need_lam = ctx.needs_input_grad[:5]
        offsets, mode, difference = ctx.offsets, ctx.mode, ctx.difference
        dtype = _compute_dtype(u.dtype)
        n, _, h, w = u.shape
        u_c = u.to(dtype)
        with torch.autocast(u.device.type, enabled=False):
            s = s_graph = None
            if mode == "similarity":
                with torch.enable_grad():
                    d2_leaf = d2.detach().requires_grad_(need_guide)
                    lam_leaf = ctx.lam if lam is None else lam.detach().to(dtype)
                    if lam is not None:
                        lam_leaf.requires_grad_(need_lam)
                    s_graph = _similarity(ctx.similarity, d2_leaf, lam_leaf)
                s = s_graph.detach()
            elif mode == "given":
                s = guide.detach().to(dtype)
            inside = ts.inside_mask(offsets, h, w, u_c)
            s_inside = inside.expand(n, -1, h, w) if s is None else s * inside
            need_s = (mode == "given" and need_guide) or (
                mode == "similarity" and (need_guide or need_lam) and s_graph.requires_grad
            )
            grad_u, grad_s, grad_w, grad_b = _backward(
                u_c,
                s,
                s_inside,
                _stack_weight(weight.to(dtype), centre=not difference),
                grad_y.to(dtype),
                offsets,
                (need_u, need_s, need_w, need_b),
                difference,
            )
            grad_guide = grad_lam = None
            if mode == "given":
                grad_guide = grad_s
            elif need_s:
                wrt = [x for x, need in ((d2_leaf, need_guide), (lam_leaf, need_lam)) if need]
                grads = list(torch.autograd.grad(s_graph, wrt, grad_s, allow_unused=True))
                grad_d2 = grads.pop(0) if need_guide else None
                grad_lam = grads.pop(0) if need_lam else None
                if grad_d2 is not None:
                    grad_guide = _squared_distances_backward(guide.to(dtype), grad_d2, offsets)
        if grad_w is not None:
            grad_w = _unstack_weight_grad(grad_w, weight, centre=not difference)
        return (
            _cast(grad_u, u),
            _cast(grad_guide, guide),
            _cast(grad_w, weight),
            _cast(grad_b, bias),
            _cast(grad_lam, lam),
            None,
            None,
            None,
            None,
        )


class _SquaredDistance(torch.autograd.Function):
    """``d2`` of :func:`neighbour_squared_distance`; saves only V."""

    @staticmethod
    def forward(ctx, v, offsets):
        ctx.save_for_backward(v)
        ctx.offsets = offsets
        return _squared_distances(v.to(_compute_dtype(v.dtype)), offsets).to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_d2):
        (v,) = ctx.saved_tensors
        dtype = _compute_dtype(v.dtype)
        grad_v = _squared_distances_backward(v.to(dtype), grad_d2.to(dtype), ctx.offsets)
        return grad_v.to(v.dtype), None
