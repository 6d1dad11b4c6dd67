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

Element-wise ops. The GEMMs are always ``torch.mm``/``addmm``; the element-wise work (building a
chunk of D, the ``dS`` reduction, the ``dU`` adjoint, ``d2`` and its gradient) is done by an ops
object chosen per call with ``elementwise=``: ``"torch"``, PyTorch ops
(:class:`sdnseg.nn._tap_stacks.TorchElementwise`), or ``"triton"``, Triton kernels without
``tl.dot`` (:class:`sdnseg.nn._triton_elementwise.TritonElementwise`: one pass per chunk for D,
``dU`` as a gather without atomics). :mod:`sdnseg.nn._dispatch` picks ``"triton"`` for CUDA
tensors on ``backend="torch"``; the tests run it under the Triton interpreter on CPU tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

from sdnseg.nn import _tap_stacks as ts
from sdnseg.nn._tap_stacks import Offset, TorchElementwise
from sdnseg.nn._triton_elementwise import TritonElementwise

SimilarityFn = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]
ElementwiseOps = TorchElementwise | TritonElementwise
ELEMENTWISE = {"torch": TorchElementwise(), "triton": TritonElementwise()}


def elementwise_ops(name: str) -> ElementwiseOps:
    """The element-wise ops ``"torch"`` or ``"triton"`` (see the module doc)."""
    if name not in ELEMENTWISE:
        raise ValueError(f"elementwise must be one of {tuple(ELEMENTWISE)}, got {name!r}")
    return ELEMENTWISE[name]


def semantic_difference_conv(
    u: torch.Tensor,
    v: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: Sequence[Offset],
    similarity: SimilarityFn | None,
    lam: torch.Tensor | float,
    elementwise: str = "torch",
) -> torch.Tensor:
    """Eq. 5 with ``S = similarity(d2(V), lam)``, or ``S ≡ 1`` for ``similarity=None`` (V unused).

    ``offsets`` are :func:`kernel_offsets` of ``weight``'s kernel; bias is added in the GEMM.
    ``elementwise``: ``"torch"`` or ``"triton"`` ops for the element-wise work (module doc).
    """
    return _apply_similarity(
        u, v, weight, bias, offsets, similarity, lam, True, elementwise_ops(elementwise)
    )


def semantic_conv(
    u: torch.Tensor,
    v: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: Sequence[Offset],
    similarity: SimilarityFn | None,
    lam: torch.Tensor | float,
    elementwise: str = "torch",
) -> torch.Tensor:
    """``Y_m = sum_k W_k · S_k(m) · U(m+o_k) (+ bias)``, ``S = similarity(d2(V), lam)`` or ``S ≡ 1``
    (then a zero-padded ``conv2d``).

    ``offsets`` are ``kernel_offsets(..., centre=True)`` of ``weight``'s kernel: every tap.
    """
    return _apply_similarity(
        u, v, weight, bias, offsets, similarity, lam, False, elementwise_ops(elementwise)
    )


def _apply_similarity(u, v, weight, bias, offsets, similarity, lam, difference: bool, ops):
    offsets = list(offsets)
    if similarity is None:
        return _SDC.apply(u, None, weight, bias, None, "ones", None, offsets, difference, ops)
    return _SDC.apply(u, v, weight, bias, lam, "similarity", similarity, offsets, difference, ops)


def difference_conv(
    u: torch.Tensor,
    s: torch.Tensor,
    weight: torch.Tensor,
    offsets: Sequence[Offset],
    elementwise: str = "torch",
) -> torch.Tensor:
    """Eq. 5 given S (N, K, H, W): ``sum_k W_k · S_k ⊙ (U(m+o_k) - U(m))``, no bias.

    S where the neighbour is outside never enters Y (if finite) and gets a zero gradient.
    """
    ops = elementwise_ops(elementwise)
    return _SDC.apply(u, s, weight, None, None, "given", None, list(offsets), True, ops)


def neighbour_squared_distance(
    v: torch.Tensor, offsets: Sequence[Offset], elementwise: str = "torch"
) -> torch.Tensor:
    """``d2[:, k, m] = |V(m+o_k) - V(m)|^2 / Cf`` (N, K, H, W), zero where the neighbour is outside."""
    return _SquaredDistance.apply(v, list(offsets), elementwise_ops(elementwise))


# --- the three GEMMs and the element-wise work, chunk by chunk --------------------------------


def _forward(
    u: torch.Tensor,
    s: torch.Tensor | None,
    w_cat: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: list[Offset],
    y: torch.Tensor,
    difference: bool,
    ops: ElementwiseOps,
) -> None:
    """``y = W_cat · (S ⊙ ΔU) (+ bias)`` into ``y`` (N, Co, H, W); ``s`` None: S ≡ 1;
    ``difference=False``: ``U(m+o_k)`` for ``ΔU``."""
    n, ci, h, w = u.shape
    k, co = len(offsets), w_cat.shape[0]
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, ci, u))
    stacks = ts.TapStacks(k, ci, u, chunks, scratch=False, zero=ops.zeroed_stacks)
    for c in chunks:
        d = ops.tap_stack(u, s, c, offsets, stacks(c), difference)
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
    s_adjoint: torch.Tensor | None,
    w_cat: torch.Tensor,
    grad_y: torch.Tensor,
    offsets: list[Offset],
    needs: tuple[bool, bool, bool, bool],
    difference: bool,
    ops: ElementwiseOps,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of :func:`_forward` into (U, S, W_cat, bias), those that ``needs`` asks for.

    ``s_adjoint`` is ``ops.adjoint_similarity`` of S: what ``dU``'s gather of ``S ⊙ G`` takes.
    """
    need_u, need_s, need_w, need_b = needs
    n, ci, h, w = u.shape
    k, co = len(offsets), w_cat.shape[0]
    grad_u = torch.zeros_like(u) if need_u else None
    grad_s = u.new_empty(n, k, h, w) if need_s else None
    grad_w = w_cat.new_zeros(co, k * ci) if need_w else None
    grad_b = w_cat.new_zeros(co) if need_b else None
    chunks = ts.chunks(n, h, w, ts.chunk_pixels(k, ci, u))
    stacks = ts.TapStacks(k, ci, u, chunks, scratch=True, zero=ops.zeroed_stacks)
    for c in chunks:
        g = ts.part(grad_y, c).reshape(co, -1)
        if need_b:
            grad_b += g.sum(1)
        if not (need_u or need_s or need_w):
            continue
        stack = stacks(c)
        scratch = stacks.scratch_like(stack)
        if need_w or (need_s and ops.grad_s_reads_stack):
            # D for dW; with need_s the torch ops keep ΔU in the stack for dS.
            s_w, keep = (s, scratch if need_s else None) if need_w else (None, None)
            d = ops.tap_stack(u, s_w, c, offsets, stack, difference, keep)
            if need_w:
                grad_w.addmm_(g, d.view(k * ci, -1).t())
        if need_u or need_s:
            gk = torch.mm(w_cat.t(), g, out=scratch.view(k * ci, -1)).view(stack.shape)
            if need_s:
                ops.grad_similarity(u, gk, c, offsets, stack, ts.part(grad_s, c), difference)
            if need_u:
                ops.grad_input(grad_u, gk, s_adjoint, c, offsets, difference)
    return grad_u, grad_s, grad_w, grad_b


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
    def forward(ctx, u, guide, weight, bias, lam, mode, similarity, offsets, difference, ops):
        dtype = _compute_dtype(u.dtype)
        n, _, h, w = u.shape
        u_c = u.to(dtype)
        d2 = s = None
        if mode == "similarity":
            d2 = ops.squared_distances(guide.to(dtype), offsets)
            s = _similarity(similarity, d2, lam.to(dtype) if torch.is_tensor(lam) else lam)
        elif mode == "given":
            s = guide.to(dtype)
        y = torch.empty(
            n, weight.shape[0], h, w, dtype=dtype, device=u.device, memory_format=_memory_format(u)
        )
        bias_c = None if bias is None else bias.to(dtype)
        w_cat = _stack_weight(weight.to(dtype), centre=not difference)
        _forward(u_c, s, w_cat, bias_c, offsets, y, difference, ops)
        lam_tensor = lam if torch.is_tensor(lam) else None
        ctx.save_for_backward(u, guide, weight, bias, lam_tensor, d2)
        ctx.mode, ctx.similarity, ctx.offsets, ctx.lam = mode, similarity, offsets, lam
        ctx.difference, ctx.ops = difference, ops
        return y.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        u, guide, weight, bias, lam, d2 = ctx.saved_tensors
        need_u, need_guide, need_w, need_b, need_lam = ctx.needs_input_grad[:5]
        offsets, mode, difference, ops = ctx.offsets, ctx.mode, ctx.difference, ctx.ops
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
            s_adjoint = ops.adjoint_similarity(s, offsets, n, h, w, u_c) if need_u else None
            need_s = (mode == "given" and need_guide) or (
                mode == "similarity" and (need_guide or need_lam) and s_graph.requires_grad
            )
            grad_u, grad_s, grad_w, grad_b = _backward(
                u_c,
                s,
                s_adjoint,
                _stack_weight(weight.to(dtype), centre=not difference),
                grad_y.to(dtype),
                offsets,
                (need_u, need_s, need_w, need_b),
                difference,
                ops,
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
                    grad_guide = ops.squared_distances_backward(guide.to(dtype), grad_d2, offsets)
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
            None,
        )


class _SquaredDistance(torch.autograd.Function):
    """``d2`` of :func:`neighbour_squared_distance`; saves only V."""

    @staticmethod
    def forward(ctx, v, offsets, ops):
        ctx.save_for_backward(v)
        ctx.offsets, ctx.ops = offsets, ops
        return ops.squared_distances(v.to(_compute_dtype(v.dtype)), offsets).to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_d2):
        (v,) = ctx.saved_tensors
        dtype = _compute_dtype(v.dtype)
        grad_v = ctx.ops.squared_distances_backward(v.to(dtype), grad_d2.to(dtype), ctx.offsets)
        return grad_v.to(v.dtype), None, None
