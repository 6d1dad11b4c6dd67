"""The element-wise work of the three-GEMM SDC (Eq. 5) as Triton kernels, private.

:mod:`sdnseg.nn._gemm` computes Eq. 5 as convolution's three GEMMs (``torch.mm``/``addmm``:
cuBLAS on a GPU) plus element-wise work over chunks of tap stacks. That work goes through an
"element-wise ops" object: :class:`sdnseg.nn._tap_stacks.TorchElementwise` does it with PyTorch
ops, :class:`TritonElementwise` here with the Triton kernels of
:mod:`sdnseg.nn._triton_elementwise_kernels`. Both have the same methods, so the algebra (chunks,
GEMMs, autograd) is one code path whichever does the element-wise part:

* :meth:`~TritonElementwise.tap_stack`: a chunk of ``D_k = S_k ⊙ ΔU_k`` (``S_k ⊙ U(m+o_k)``
  without the difference), zero where the neighbour is outside, in one pass straight into the
  (K, C, b, r, W) workspace (the PyTorch ops: K strided subtractions, then ``mul_``);
* :meth:`~TritonElementwise.grad_similarity`: ``dS_k(m) = <G_k(m), ΔU_k(m)>`` over channels,
  ΔU recomputed from U in the same pass instead of read back from a stack;
* :meth:`~TritonElementwise.grad_input`: ``dU(m) += sum_k [T_k(m - o_k) - T_k(m)]``,
  ``T = S ⊙ G``, the adjoint of ``tap_stack`` as a gather per output pixel, so no atomics (the
  PyTorch ops: a scatter of K strided ``add_`` calls);
* :meth:`~TritonElementwise.squared_distances` and its backward: ``d2_k(m) = |V(m+o_k) - V(m)|^2
  / Cf`` and the gather of ``dV``, over the whole tensor at once (no tap stack).

Inputs are the GEMM path's compute tensors (float32 or float64), in any layout: the kernels take
every stride, so NCHW, channels-last and the strided (C, b, r, W) chunk views of
:func:`sdnseg.nn._tap_stacks.part` need no copies. Accumulation is in that compute dtype.

The kernel module is imported on first use, so importing this one needs no Triton; whether the
kernels are compiled or interpreted is fixed at that import by ``TRITON_INTERPRET`` (see
:func:`reload_kernels`). Under the interpreter they run on CPU tensors, as the tests do.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from types import ModuleType

import torch

from sdnseg.nn._tap_stacks import Chunk, Offset

__all__ = ["TritonElementwise", "kernels_interpreted", "reload_kernels"]


def _kernels() -> ModuleType:
    return importlib.import_module("sdnseg.nn._triton_elementwise_kernels")


def reload_kernels() -> ModuleType:
    """Re-decorate the kernels under the current ``TRITON_INTERPRET`` (for tests)."""
    return importlib.reload(_kernels())


def kernels_interpreted() -> bool:
    """Whether the kernels were decorated for the Triton interpreter."""
    return bool(_kernels().INTERPRET)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.lru_cache(maxsize=64)
def _offsets_table(offsets: tuple[Offset, ...], device: torch.device) -> torch.Tensor:
    """The (K, 2) int32 (dy, dx) table the kernels read; cached so it is copied to a GPU once."""
    return torch.tensor(offsets, dtype=torch.int32, device=device).reshape(-1, 2).contiguous()


def _table(offsets: list[Offset], like: torch.Tensor) -> torch.Tensor:
    return _offsets_table(tuple((int(dy), int(dx)) for dy, dx in offsets), like.device)


def _launch(name: str, config: str, grid: tuple[int, ...], like: torch.Tensor, *args, **meta):
    mod = _kernels()
    # Triton launches on the current CUDA device; make it the tensors' device.
    guard = torch.cuda.device(like.device) if like.is_cuda else contextlib.nullcontext()
    with guard:
        getattr(mod, name)[grid](*args, **meta, **mod.CONFIGS[config])


def _block(config: str, name: str) -> int:
    return _kernels().CONFIGS[config][name]


class TritonElementwise:
    """The element-wise ops of :mod:`sdnseg.nn._gemm` as Triton kernels (see the module doc).

    Same methods as :class:`sdnseg.nn._tap_stacks.TorchElementwise`. The stack kernel writes
    every element (zeros at borders), so tap stacks need no zeroing, and ``grad_similarity``
    recomputes the differences from U, so it reads no stack.
    """

    name = "triton"
    zeroed_stacks = False
    grad_s_reads_stack = False

    def adjoint_similarity(
        self, s: torch.Tensor | None, offsets: list[Offset], n: int, h: int, w: int, like
    ) -> torch.Tensor | None:
        """S as :meth:`grad_input` takes it: unchanged (the kernel masks the borders itself)."""
        return s

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
        """``stack[k] = S_k ⊙ (x(m+o_k) - x(m))`` (``difference``) or ``S_k ⊙ x(m+o_k)`` over the
        chunk, zero where the neighbour is outside; ``s`` None: S ≡ 1. Returns ``stack``
        (``scratch`` is unused: nothing needs the plain differences kept)."""
        k, ch, b, r, w = stack.shape
        pixels = b * r * w
        if k == 0 or ch == 0 or pixels == 0:
            return stack
        h = x.shape[2]
        s_strides = (0, 0, 0, 0) if s is None else s.stride()
        grid = (_cdiv(pixels, _block("stack", "BLOCK_P")), _cdiv(ch, _block("stack", "BLOCK_C")))
        _launch(
            "_tap_stack_kernel", "stack", grid, x,
            x, x if s is None else s, stack, _table(offsets, x),
            pixels, r * w, h, w, ch, k, c.n0, c.y0,
            *x.stride(), *s_strides, *stack.stride(),
            HAS_S=s is not None, DIFFERENCE=difference,
        )  # fmt: skip
        return stack

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
        """``out[k] = sum_c gk[k] ⊙ (u(m+o_k) - u(m))`` (or ``⊙ u(m+o_k)``), zero where the
        neighbour is outside; ``gk`` (K, C, b, r, W), ``out`` (K, b, r, W)."""
        k, ch, b, r, w = gk.shape
        pixels = b * r * w
        if k == 0 or pixels == 0:
            return
        if ch == 0:
            out.zero_()
            return
        grid = (_cdiv(pixels, _block("reduce", "BLOCK_P")), k)
        _launch(
            "_grad_s_kernel", "reduce", grid, u,
            u, gk, out, _table(offsets, u),
            pixels, r * w, u.shape[2], w, ch, c.n0, c.y0,
            *u.stride(), *gk.stride(), *out.stride(),
            DIFFERENCE=difference,
        )  # fmt: skip

    def grad_input(
        self,
        grad: torch.Tensor,
        gk: torch.Tensor,
        s: torch.Tensor | None,
        c: Chunk,
        offsets: list[Offset],
        difference: bool,
    ) -> None:
        """``grad(m) += sum_k T_k(m - o_k) - T_k(m)`` (the second term only with ``difference``),
        ``T_k = S_k ⊙ gk[k]`` over the chunk's pixels whose neighbour is inside.

        ``grad`` (N, C, H, W) is updated on the chunk's rows widened by the kernel's reach.
        """
        k, ch, b, _, w = gk.shape
        h = grad.shape[2]
        if k == 0 or ch == 0 or b == 0:
            return
        dys = [dy for dy, _ in offsets]
        ya, yb = max(0, c.y0 + min(0, *dys)), min(h, c.y1 + max(0, *dys))
        pixels = b * (yb - ya) * w
        if pixels <= 0:
            return
        s_strides = (0, 0, 0, 0) if s is None else s.stride()
        grid = (_cdiv(pixels, _block("gather", "BLOCK_P")), _cdiv(ch, _block("gather", "BLOCK_C")))
        _launch(
            "_grad_u_kernel", "gather", grid, grad,
            grad, gk, gk if s is None else s, _table(offsets, grad),
            pixels, (yb - ya) * w, h, w, ch, k, c.n0, ya, c.y0, c.y1,
            *grad.stride(), *gk.stride(), *s_strides,
            HAS_S=s is not None, DIFFERENCE=difference,
        )  # fmt: skip

    def squared_distances(self, v: torch.Tensor, offsets: list[Offset]) -> torch.Tensor:
        """``d2[:, k, m] = |v(m+o_k) - v(m)|^2 / Cf`` (N, K, H, W), zero where it is outside."""
        n, cf, h, w = v.shape
        k = len(offsets)
        d2 = v.new_zeros(n, k, h, w)
        if k == 0 or cf == 0 or n * h * w == 0:
            return d2
        grid = (_cdiv(n * h * w, _block("reduce", "BLOCK_P")), k)
        _launch(
            "_d2_kernel", "reduce", grid, v,
            v, d2, _table(offsets, v),
            n * h * w, h * w, h, w, cf,
            *v.stride(), *d2.stride(),
        )  # fmt: skip
        return d2

    def squared_distances_backward(
        self, v: torch.Tensor, grad_d2: torch.Tensor, offsets: list[Offset]
    ) -> torch.Tensor:
        """The gradient of :meth:`squared_distances` into ``v``, in ``v``'s memory format."""
        n, cf, h, w = v.shape
        grad_v = torch.empty_like(v)
        if not offsets or cf == 0 or n * h * w == 0:
            return grad_v.zero_()
        grid = (
            _cdiv(n * h * w, _block("gather", "BLOCK_P")),
            _cdiv(cf, _block("gather", "BLOCK_C")),
        )
        _launch(
            "_d2_backward_kernel", "gather", grid, v,
            v, grad_d2, grad_v, _table(offsets, v),
            n * h * w, h * w, h, w, cf, len(offsets),
            *v.stride(), *grad_d2.stride(), *grad_v.stride(),
        )  # fmt: skip
        return grad_v
