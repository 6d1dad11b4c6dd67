"""Tap stacks of the three-GEMM SDC (:mod:`sdnseg.nn._gemm`): chunks of pixels, private.

For one chunk of pixels (a band of rows of one image, or several whole small images) a tap stack
holds ``x(m + o_k) - x(m)`` for every non-centre tap ``k`` of Eq. 5 (or, for the similarity-weighted
convolution without the difference, ``x(m + o_k)`` for every tap) as a (K, C, b, r, W) tensor,
channel-major, so that the GEMMs read it as a (K·C, pixels) matrix. Entries whose neighbour lies
outside the image are zero and stay zero (they are never written, only scaled in place), so
borders need no mask and no padded copy of the input is made. :func:`scatter_differences` is the
adjoint of :func:`differences`, the gather of the backward pass.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

import torch

Offset = tuple[int, int]


# Bytes of one chunk's tap stack (K × C × pixels, float32). On the CPU the stack is written,
# rescaled and read by the GEMM, so it should stay in the last-level cache; on CUDA it is a
# bounded workspace.
CHUNK_BYTES = {"cpu": 4 << 20, "cuda": 256 << 20}
# Fewer pixels per chunk cost more in Python overhead (a few operations per tap and chunk) and
# thinner GEMMs than a smaller stack saves in cache misses (5x5 kernels, 256 channels).
MIN_CHUNK_PIXELS = 512
# Tests set this to force chunks of this many pixels (rows of one image, or whole images).
chunk_pixels_override: int | None = None


def kernel_offsets(
    kernel_size: tuple[int, int], dilation: int, centre: bool = False
) -> list[Offset]:
    """The (dy, dx) pixel offsets of a kh×kw dilated kernel, row-major, centre left out unless
    ``centre`` (the centre multiplies ``U_m - U_m = 0`` in Eq. 5, but ``U_m`` without the difference)."""
    kh, kw = kernel_size
    return [
        ((i - kh // 2) * dilation, (j - kw // 2) * dilation)
        for i in range(kh)
        for j in range(kw)
        if centre or not (i == kh // 2 and j == kw // 2)
    ]


class Chunk(NamedTuple):
    """Images ``n0:n1``, rows ``y0:y1``: a band of one image, or whole images."""

    n0: int
    n1: int
    y0: int
    y1: int


def chunks(n: int, h: int, w: int, pixels: int) -> list[Chunk]:
    rows = max(1, pixels // max(w, 1))
    if rows < h:
        rows = -(-h // -(-h // rows))  # the same rows in every band but the last
        return [
            Chunk(i, i + 1, y0, min(y0 + rows, h)) for i in range(n) for y0 in range(0, h, rows)
        ]
    images = max(1, pixels // max(h * w, 1))
    return [Chunk(n0, min(n0 + images, n), 0, h) for n0 in range(0, n, images)]


def chunk_pixels(taps: int, channels: int, x: torch.Tensor) -> int:
    if chunk_pixels_override is not None:
        return chunk_pixels_override
    budget = CHUNK_BYTES["cuda" if x.is_cuda else "cpu"]
    return max(MIN_CHUNK_PIXELS, budget // max(1, taps * channels * x.element_size()))


def part(x: torch.Tensor, c: Chunk) -> torch.Tensor:
    """The chunk of an (N, C, H, W) tensor as a (C, b, r, W) view."""
    return x[c.n0 : c.n1, :, c.y0 : c.y1].transpose(0, 1)


def as_matrix(x: torch.Tensor) -> torch.Tensor | None:
    """(C, b, r, W) as a (C, pixels) view, or None where the strides do not allow one."""
    try:
        return x.view(x.shape[0], -1)
    except RuntimeError:
        return None


def inside_range(offset: Offset, c: Chunk, h: int, w: int) -> tuple[int, int, int, int]:
    """Rows ``ya:yb`` (of the image) and columns ``xa:xb`` of the chunk whose neighbour is inside."""
    dy, dx = offset
    return max(c.y0, -dy), min(c.y1, h - dy), max(0, -dx), min(w, w - dx)


class TapStacks:
    """The (K, C, b, r, W) tap stacks of one loop over ``chunks``, one per chunk shape, and a
    scratch stack of the largest shape.

    A stack's entries whose neighbour is outside are never written by :func:`differences`, only
    scaled in place, so they stay zero from one chunk to the next: each stack is zeroed once, here
    (unless ``zero`` is off: the Triton stack kernel writes every entry).
    On the CPU the memory is a per-thread workspace kept between calls: fresh pages of a new
    allocation cost as much as several passes over them.
    """

    def __init__(
        self,
        taps: int,
        channels: int,
        like: torch.Tensor,
        chunks: list[Chunk],
        scratch: bool,
        zero: bool = True,
    ) -> None:
        width = like.shape[-1]
        shapes = dict.fromkeys((taps, channels, c.n1 - c.n0, c.y1 - c.y0, width) for c in chunks)
        sizes = [math.prod(shape) for shape in shapes]
        total = sum(sizes) + (max(sizes, default=0) if scratch else 0)
        flat = workspace(total, like)
        self.stacks, offset = {}, 0
        for shape, size in zip(shapes, sizes, strict=True):
            self.stacks[shape[2:4]] = flat[offset : offset + size].view(shape)
            offset += size
        if zero:
            flat[:offset].zero_()
        self.scratch = flat[offset:]

    def __call__(self, c: Chunk) -> torch.Tensor:
        return self.stacks[(c.n1 - c.n0, c.y1 - c.y0)]

    def scratch_like(self, stack: torch.Tensor) -> torch.Tensor:
        return self.scratch[: stack.numel()].view(stack.shape)


_workspaces = threading.local()


def workspace(numel: int, like: torch.Tensor) -> torch.Tensor:
    """At least ``numel`` elements of ``like``'s dtype; on the CPU reused by later calls."""
    if like.device.type != "cpu":
        return like.new_empty(numel)  # the CUDA caching allocator already reuses memory
    cache = _workspaces.__dict__.setdefault("buffers", {})
    buffer = cache.get(like.dtype)
    if buffer is None or buffer.numel() < numel:
        cache[like.dtype] = buffer = like.new_empty(numel)
    return buffer[:numel]


def differences(
    x: torch.Tensor, c: Chunk, offsets: list[Offset], out: torch.Tensor, difference: bool = True
) -> None:
    """``out[k] = x(m + o_k) - x(m)`` over the chunk, zero where the neighbour is outside;
    ``difference=False``: ``out[k] = x(m + o_k)`` (a convolution's gather)."""
    h, w = x.shape[-2:]
    for k, offset in enumerate(offsets):
        ya, yb, xa, xb = inside_range(offset, c, h, w)
        o = out[k]
        if ya >= yb or xa >= xb:
            o.zero_()
            continue
        if ya > c.y0:
            o[:, :, : ya - c.y0].zero_()
        if yb < c.y1:
            o[:, :, yb - c.y0 :].zero_()
        dy, dx = offset
        neighbour = x[c.n0 : c.n1, :, ya + dy : yb + dy, xa + dx : xb + dx].transpose(0, 1)
        target = o[:, :, ya - c.y0 : yb - c.y0, xa:xb]
        if difference:
            torch.sub(neighbour, x[c.n0 : c.n1, :, ya:yb, xa:xb].transpose(0, 1), out=target)
        else:
            target.copy_(neighbour)


def scatter_differences(
    grad: torch.Tensor, c: Chunk, offsets: list[Offset], t: torch.Tensor, difference: bool = True
) -> None:
    """The adjoint of :func:`differences`: ``grad(m + o_k) += t_k(m)``, ``grad(m) -= t_k(m)``
    (the second only with ``difference``).

    ``t`` (K, C, b, r, W) must be zero where the neighbour is outside.
    """
    h, w = grad.shape[-2:]
    if difference:
        part(grad, c).sub_(t.sum(0))
    for k, offset in enumerate(offsets):
        ya, yb, xa, xb = inside_range(offset, c, h, w)
        if ya >= yb or xa >= xb:
            continue
        dy, dx = offset
        target = grad[c.n0 : c.n1, :, ya + dy : yb + dy, xa + dx : xb + dx].transpose(0, 1)
        target.add_(t[k][:, :, ya - c.y0 : yb - c.y0, xa:xb])


def inside_mask(offsets: list[Offset], h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, K, H, W): 1 where ``m + o_k`` lies in the image."""
    shifts = torch.tensor(offsets, device=like.device).view(-1, 2)
    ys = torch.arange(h, device=like.device) + shifts[:, :1]
    xs = torch.arange(w, device=like.device) + shifts[:, 1:]
    rows, cols = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    return (rows[:, :, None] & cols[:, None, :]).to(like.dtype)[None]


class TorchElementwise:
    """The element-wise work of :mod:`sdnseg.nn._gemm` in PyTorch ops, on any device.

    :class:`sdnseg.nn._triton_elementwise.TritonElementwise` has the same methods (its doc lists
    them); :mod:`sdnseg.nn._gemm` calls one or the other and keeps the GEMMs and chunks itself.
    Here :meth:`tap_stack` with a ``scratch`` keeps the plain differences in ``stack``, which
    :meth:`grad_similarity` then reads (and overwrites), and the stacks rely on being zeroed once.
    """

    name = "torch"
    zeroed_stacks = True
    grad_s_reads_stack = True

    def adjoint_similarity(
        self, s: torch.Tensor | None, offsets: list[Offset], n: int, h: int, w: int, like
    ) -> torch.Tensor:
        """S (or ones) times the inside mask: :meth:`grad_input` scatters ``S ⊙ G`` only from
        taps whose neighbour is inside."""
        inside = inside_mask(offsets, h, w, like)
        return inside.expand(n, -1, h, w) if s is None else s * inside

    def tap_stack(
        self,
        x: torch.Tensor,
        s: torch.Tensor | None,
        c: Chunk,
        offsets: list[Offset],
        stack: torch.Tensor,
        difference: bool,
        scratch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """D = ``S ⊙ differences`` of the chunk (S ≡ 1 for ``s`` None): in ``stack``, or, given
        ``scratch``, in ``scratch`` with the differences kept in ``stack``."""
        differences(x, c, offsets, stack, difference)
        if s is None:
            return stack
        s_c = part(s, c).unsqueeze(1)
        return stack.mul_(s_c) if scratch is None else torch.mul(stack, s_c, out=scratch)

    def grad_similarity(
        self,
        u: torch.Tensor,
        gk: torch.Tensor,
        c: Chunk,
        offsets: list[Offset],
        stack: torch.Tensor,
        out: torch.Tensor,
        difference: bool,
    ) -> None:
        """``out[k] = sum_c gk[k] ⊙ ΔU_k`` from the differences :meth:`tap_stack` left in ``stack``."""
        torch.sum(stack.mul_(gk), 1, out=out)

    def grad_input(
        self,
        grad: torch.Tensor,
        gk: torch.Tensor,
        s: torch.Tensor,
        c: Chunk,
        offsets: list[Offset],
        difference: bool,
    ) -> None:
        """``grad += adjoint of differences`` applied to ``gk ⊙ s`` (``gk`` is overwritten);
        ``s`` is :meth:`adjoint_similarity`'s."""
        scatter_differences(grad, c, offsets, gk.mul_(part(s, c).unsqueeze(1)), difference)

    def squared_distances(self, v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
        """``d2[:, k, m] = |v(m+o_k) - v(m)|^2 / Cf`` (N, K, H, W), chunk by chunk."""
        n, cf, h, w = v.shape
        k = len(offsets)
        d2 = v.new_empty(n, k, h, w)
        pieces = chunks(n, h, w, chunk_pixels(k, cf, v))
        stacks = TapStacks(k, cf, v, pieces, scratch=False)
        for c in pieces:
            diff = stacks(c)
            differences(v, c, offsets, diff)
            torch.sum(diff.square_(), 1, out=part(d2, c))
        return d2.div_(cf)

    def squared_distances_backward(
        self, v: torch.Tensor, grad_d2: torch.Tensor, offsets: list[Offset]
    ) -> torch.Tensor:
        n, cf, h, w = v.shape
        k = len(offsets)
        grad_v = torch.zeros_like(v)
        coef = grad_d2 * (2.0 / cf)
        pieces = chunks(n, h, w, chunk_pixels(k, cf, v))
        stacks = TapStacks(k, cf, v, pieces, scratch=False)
        for c in pieces:
            diff = stacks(c)
            differences(v, c, offsets, diff)
            scatter_differences(grad_v, c, offsets, diff.mul_(part(coef, c).unsqueeze(1)))
        return grad_v
