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
or several whole small images), sized to stay in cache (:data:`CHUNK_BYTES`), multiplied with
``torch.mm``/``addmm`` (MKL or OpenBLAS does the heavy part) and dropped; backward builds it
again. Saved for backward: the inputs and ``d2`` (N, K, H, W), from which S and its derivatives
are recomputed; the derivative of any similarity callable comes from autograd on that small tensor.

Layout: chunks are channel-major, (K, C, pixels), so that for NCHW features (the networks' layout)
the GEMMs read dY and write Y in place as (C, pixels) matrices, without transposes; other layouts
work through strided views. Borders: ``ΔU_k`` and ``ΔV_k`` are written only where ``m + o_k`` is
inside; elsewhere the chunk buffers hold zeros, so D, d2 and dS vanish there without a mask and no
padded copy of U or V is made. Precision: float64 stays float64; float32, bfloat16 and float16 are
computed in float32 and rounded to the input dtype once, at the end.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

Offset = tuple[int, int]
SimilarityFn = Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]

# Bytes of one chunk's tap stack (K × C × pixels, float32). On the CPU the stack is written,
# rescaled and read by the GEMM, so it should stay in the last-level cache; on CUDA it is a
# bounded workspace.
CHUNK_BYTES = {"cpu": 4 << 20, "cuda": 256 << 20}
# Fewer pixels per chunk cost more in Python overhead (a few operations per tap and chunk) and
# thinner GEMMs than a smaller stack saves in cache misses (5x5 kernels, 256 channels).
MIN_CHUNK_PIXELS = 512
# Tests set this to force chunks of this many pixels (rows of one image, or whole images).
_chunk_pixels_override: int | None = None


def kernel_offsets(kernel_size: tuple[int, int], dilation: int) -> list[Offset]:
    """The (dy, dx) pixel offsets of a kh×kw dilated kernel, row-major, centre left out."""
    kh, kw = kernel_size
    return [
        ((i - kh // 2) * dilation, (j - kw // 2) * dilation)
        for i in range(kh)
        for j in range(kw)
        if not (i == kh // 2 and j == kw // 2)
    ]


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
    if similarity is None:
        return _SDC.apply(u, None, weight, bias, None, "ones", None, list(offsets))
    return _SDC.apply(u, v, weight, bias, lam, "similarity", similarity, list(offsets))


def difference_conv(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> torch.Tensor:
    """Eq. 5 given S (N, K, H, W): ``sum_k W_k · S_k ⊙ (U(m+o_k) - U(m))``, no bias.

    S where the neighbour is outside never enters Y (if finite) and gets a zero gradient.
    """
    return _SDC.apply(u, s, weight, None, None, "given", None, list(offsets))


def neighbour_squared_distance(v: torch.Tensor, offsets: Sequence[Offset]) -> torch.Tensor:
    """``d2[:, k, m] = |V(m+o_k) - V(m)|^2 / Cf`` (N, K, H, W), zero where the neighbour is outside."""
    return _SquaredDistance.apply(v, list(offsets))


# --- chunks ------------------------------------------------------------------------------------


class _Chunk(NamedTuple):
    """Images ``n0:n1``, rows ``y0:y1``: a band of one image, or whole images."""

    n0: int
    n1: int
    y0: int
    y1: int


def _chunks(n: int, h: int, w: int, pixels: int) -> list[_Chunk]:
    rows = max(1, pixels // max(w, 1))
    if rows < h:
        rows = -(-h // -(-h // rows))  # the same rows in every band but the last
        return [_Chunk(i, i + 1, y0, min(y0 + rows, h)) for i in range(n) for y0 in range(0, h, rows)]
    images = max(1, pixels // max(h * w, 1))
    return [_Chunk(n0, min(n0 + images, n), 0, h) for n0 in range(0, n, images)]


def _chunk_pixels(taps: int, channels: int, x: torch.Tensor) -> int:
    if _chunk_pixels_override is not None:
        return _chunk_pixels_override
    budget = CHUNK_BYTES["cuda" if x.is_cuda else "cpu"]
    return max(MIN_CHUNK_PIXELS, budget // max(1, taps * channels * x.element_size()))


def _part(x: torch.Tensor, c: _Chunk) -> torch.Tensor:
    """The chunk of an (N, C, H, W) tensor as a (C, b, r, W) view."""
    return x[c.n0 : c.n1, :, c.y0 : c.y1].transpose(0, 1)


def _as_matrix(x: torch.Tensor) -> torch.Tensor | None:
    """(C, b, r, W) as a (C, pixels) view, or None where the strides do not allow one."""
    try:
        return x.view(x.shape[0], -1)
    except RuntimeError:
        return None


def _inside_range(offset: Offset, c: _Chunk, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows ``ya:yb`` (of the image) and columns ``xa:xb`` of the chunk whose neighbour is inside."""
    dy, dx = offset
    return max(c.y0, -dy), min(c.y1, h - dy), max(0, -dx), min(w, w - dx)


class _Stacks:
    """The (K, C, b, r, W) tap stacks of one loop over ``chunks``, one per chunk shape, and a
    scratch stack of the largest shape.

    A stack's entries whose neighbour is outside are never written by :func:`_differences`, only
    scaled in place, so they stay zero from one chunk to the next: each stack is zeroed once, here.
    On the CPU the memory is a per-thread workspace kept between calls: fresh pages of a new
    allocation cost as much as several passes over them.
    """

    def __init__(
        self, taps: int, channels: int, like: torch.Tensor, chunks: list[_Chunk], scratch: bool
    ) -> None:
        width = like.shape[-1]
        shapes = dict.fromkeys((taps, channels, c.n1 - c.n0, c.y1 - c.y0, width) for c in chunks)
        sizes = [math.prod(shape) for shape in shapes]
        total = sum(sizes) + (max(sizes, default=0) if scratch else 0)
        flat = _workspace(total, like)
        self.stacks, offset = {}, 0
        for shape, size in zip(shapes, sizes, strict=True):
            self.stacks[shape[2:4]] = flat[offset : offset + size].view(shape)
            offset += size
        flat[:offset].zero_()
        self.scratch = flat[offset:]

    def __call__(self, c: _Chunk) -> torch.Tensor:
        return self.stacks[(c.n1 - c.n0, c.y1 - c.y0)]

    def scratch_like(self, stack: torch.Tensor) -> torch.Tensor:
        return self.scratch[: stack.numel()].view(stack.shape)


_workspaces = threading.local()


def _workspace(numel: int, like: torch.Tensor) -> torch.Tensor:
    """At least ``numel`` elements of ``like``'s dtype; on the CPU reused by later calls."""
    if like.device.type != "cpu":
        return like.new_empty(numel)  # the CUDA caching allocator already reuses memory
    cache = _workspaces.__dict__.setdefault("buffers", {})
    buffer = cache.get(like.dtype)
    if buffer is None or buffer.numel() < numel:
        cache[like.dtype] = buffer = like.new_empty(numel)
    return buffer[:numel]


def _differences(x: torch.Tensor, c: _Chunk, offsets: list[Offset], out: torch.Tensor) -> None:
    """``out[k] = x(m + o_k) - x(m)`` over the chunk, zero where the neighbour is outside."""
    h, w = x.shape[-2:]
    for k, offset in enumerate(offsets):
        ya, yb, xa, xb = _inside_range(offset, c, h, w)
        o = out[k]
        if ya >= yb or xa >= xb:
            o.zero_()
            continue
        if ya > c.y0:
            o[:, :, : ya - c.y0].zero_()
        if yb < c.y1:
            o[:, :, yb - c.y0 :].zero_()
        dy, dx = offset
        torch.sub(
            x[c.n0 : c.n1, :, ya + dy : yb + dy, xa + dx : xb + dx].transpose(0, 1),
            x[c.n0 : c.n1, :, ya:yb, xa:xb].transpose(0, 1),
            out=o[:, :, ya - c.y0 : yb - c.y0, xa:xb],
        )


def _scatter_differences(
    grad: torch.Tensor, c: _Chunk, offsets: list[Offset], t: torch.Tensor
) -> None:
    """The adjoint of :func:`_differences`: ``grad(m + o_k) += t_k(m)``, ``grad(m) -= t_k(m)``.

    ``t`` (K, C, b, r, W) must be zero where the neighbour is outside.
    """
    h, w = grad.shape[-2:]
    _part(grad, c).sub_(t.sum(0))
    for k, offset in enumerate(offsets):
        ya, yb, xa, xb = _inside_range(offset, c, h, w)
        if ya >= yb or xa >= xb:
            continue
        dy, dx = offset
        target = grad[c.n0 : c.n1, :, ya + dy : yb + dy, xa + dx : xb + dx].transpose(0, 1)
        target.add_(t[k][:, :, ya - c.y0 : yb - c.y0, xa:xb])


def _inside_mask(offsets: list[Offset], h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, K, H, W): 1 where ``m + o_k`` lies in the image."""
    shifts = torch.tensor(offsets, device=like.device).view(-1, 2)
    ys = torch.arange(h, device=like.device) + shifts[:, :1]
    xs = torch.arange(w, device=like.device) + shifts[:, 1:]
    rows, cols = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    return (rows[:, :, None] & cols[:, None, :]).to(like.dtype)[None]


# --- the three GEMMs and the element-wise work, chunk by chunk --------------------------------


def _forward(
    u: torch.Tensor,
    s: torch.Tensor | None,
    w_cat: torch.Tensor,
    bias: torch.Tensor | None,
    offsets: list[Offset],
    y: torch.Tensor,
) -> None:
    """``y = W_cat · (S ⊙ ΔU) (+ bias)`` into ``y`` (N, Co, H, W); ``s`` None: S ≡ 1."""
    n, ci, h, w = u.shape
    k, co = len(offsets), w_cat.shape[0]
    chunks = _chunks(n, h, w, _chunk_pixels(k, ci, u))
    stacks = _Stacks(k, ci, u, chunks, scratch=False)
    for c in chunks:
        d = stacks(c)
        _differences(u, c, offsets, d)
        if s is not None:
            d.mul_(_part(s, c).unsqueeze(1))
        out = _as_matrix(_part(y, c))
        target = out if out is not None else y.new_empty(co, d[0, 0].numel())
        if bias is None:
            torch.mm(w_cat, d.view(k * ci, -1), out=target)
        else:
            torch.addmm(bias.unsqueeze(1), w_cat, d.view(k * ci, -1), out=target)
        if out is None:
            _part(y, c).copy_(target.view_as(_part(y, c)))


def _backward(
    u: torch.Tensor,
    s: torch.Tensor | None,
    s_inside: torch.Tensor,
    w_cat: torch.Tensor,
    grad_y: torch.Tensor,
    offsets: list[Offset],
    needs: tuple[bool, bool, bool, bool],
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
    chunks = _chunks(n, h, w, _chunk_pixels(k, ci, u))
    stacks = _Stacks(k, ci, u, chunks, scratch=True)
    for c in chunks:
        g = _part(grad_y, c).reshape(co, -1)
        if need_b:
            grad_b += g.sum(1)
        if not (need_u or need_s or need_w):
            continue
        diff = stacks(c)
        shape = diff.shape
        if need_s or need_w:
            _differences(u, c, offsets, diff)
        scratch = stacks.scratch_like(diff)
        if need_w:
            d = diff if s is None else torch.mul(diff, _part(s, c).unsqueeze(1), out=scratch)
            grad_w.addmm_(g, d.view(k * ci, -1).t())
        if need_u or need_s:
            gk = torch.mm(w_cat.t(), g, out=scratch.view(k * ci, -1)).view(shape)
            if need_s:
                torch.sum(diff.mul_(gk), 1, out=_part(grad_s, c))
            if need_u:
                _scatter_differences(grad_u, c, offsets, gk.mul_(_part(s_inside, c).unsqueeze(1)))
    return grad_u, grad_s, grad_w, grad_b


def _squared_distances(v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
    n, cf, h, w = v.shape
    k = len(offsets)
    d2 = v.new_empty(n, k, h, w)
    chunks = _chunks(n, h, w, _chunk_pixels(k, cf, v))
    stacks = _Stacks(k, cf, v, chunks, scratch=False)
    for c in chunks:
        diff = stacks(c)
        _differences(v, c, offsets, diff)
        torch.sum(diff.square_(), 1, out=_part(d2, c))
    return d2.div_(cf)


def _squared_distances_backward(
    v: torch.Tensor, grad_d2: torch.Tensor, offsets: list[Offset]
) -> torch.Tensor:
    n, cf, h, w = v.shape
    k = len(offsets)
    grad_v = torch.zeros_like(v)
    coef = grad_d2 * (2.0 / cf)
    chunks = _chunks(n, h, w, _chunk_pixels(k, cf, v))
    stacks = _Stacks(k, cf, v, chunks, scratch=False)
    for c in chunks:
        diff = stacks(c)
        _differences(v, c, offsets, diff)
        _scatter_differences(grad_v, c, offsets, diff.mul_(_part(coef, c).unsqueeze(1)))
    return grad_v


# --- autograd functions ------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _stack_weight(weight: torch.Tensor) -> torch.Tensor:
    """(Co, Ci, kh, kw) -> W_cat (Co, K·Ci) over the non-centre taps, tap-major."""
    co, ci, kh, kw = weight.shape
    keep = [i for i in range(kh * kw) if i != (kh // 2) * kw + kw // 2]
    return weight.permute(0, 2, 3, 1).reshape(co, kh * kw, ci)[:, keep].reshape(co, -1)


def _unstack_weight_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(Co, K·Ci) -> (Co, Ci, kh, kw), zero at the centre tap (it multiplies ``U_m - U_m``)."""
    co, ci, kh, kw = weight.shape
    keep = [i for i in range(kh * kw) if i != (kh // 2) * kw + kw // 2]
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
    (``guide`` is S) or ``"ones"`` (S ≡ 1, no guide).
    """

    @staticmethod
    def forward(ctx, u, guide, weight, bias, lam, mode, similarity, offsets):
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
        _forward(u_c, s, _stack_weight(weight.to(dtype)), bias_c, offsets, y)
        lam_tensor = lam if torch.is_tensor(lam) else None
        ctx.save_for_backward(u, guide, weight, bias, lam_tensor, d2)
        ctx.mode, ctx.similarity, ctx.offsets, ctx.lam = mode, similarity, offsets, lam
        return y.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        u, guide, weight, bias, lam, d2 = ctx.saved_tensors
        need_u, need_guide, need_w, need_b, need_lam = ctx.needs_input_grad[:5]
        offsets, mode = ctx.offsets, ctx.mode
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
            inside = _inside_mask(offsets, h, w, u_c)
            s_inside = inside.expand(n, -1, h, w) if s is None else s * inside
            need_s = (mode == "given" and need_guide) or (
                mode == "similarity" and (need_guide or need_lam) and s_graph.requires_grad
            )
            grad_u, grad_s, grad_w, grad_b = _backward(
                u_c,
                s,
                s_inside,
                _stack_weight(weight.to(dtype)),
                grad_y.to(dtype),
                offsets,
                (need_u, need_s, need_w, need_b),
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
            grad_w = _unstack_weight_grad(grad_w, weight)
        return (
            _cast(grad_u, u),
            _cast(grad_guide, guide),
            _cast(grad_w, weight),
            _cast(grad_b, bias),
            _cast(grad_lam, lam),
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
