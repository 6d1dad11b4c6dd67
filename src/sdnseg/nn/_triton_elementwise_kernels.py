"""Triton kernels for the element-wise work of the three-GEMM SDC (Eq. 5), private.

See :mod:`sdnseg.nn._triton_elementwise` for the launch wrappers and what each kernel computes.
The GEMMs stay in cuBLAS (``torch.mm``/``addmm`` in :mod:`sdnseg.nn._gemm`); these kernels only
build and reduce tap stacks, so none of them calls ``tl.dot`` and all of them run under the
Triton interpreter on CPU tensors (``TRITON_INTERPRET=1``), which is how CI tests them.

Layouts: every tensor comes with all of its strides (features (N, C, H, W) as NCHW, channels-last
or any strided view; tap stacks (K, C, b, r, W) as :func:`sdnseg.nn._tap_stacks.part` and the
workspace give them), so no wrapper makes a copy. A tile is (channels × pixels) with pixels along
the second axis, the contiguous one of a tap stack. Pixel indices and every pointer offset are
int64, so no tensor size limit beyond the device's applies.

Borders: a neighbour outside the image contributes nothing. Every load that touches ``m + o_k``
(or ``m - o_k``) is masked by the in-image test, and the stack kernel writes explicit zeros
there, so a tap stack needs no zeroing beforehand and S outside the image never enters a result.

Precision: values are loaded and combined in the dtype of the output (the GEMM path's compute
dtype: float32 for float32, bfloat16 and float16 inputs, float64 for float64), which is also the
dtype of every channel reduction.

As in :mod:`sdnseg.nn._triton_kernels`, the kernels call only Triton builtins and their own
helpers (``tl.full``, and ``tl.reduce`` with ``tl.sum``'s combine function, which the
interpreter never calls, not the ``@jit`` standard library ``tl.zeros``/``tl.sum``), so
re-importing this module under ``TRITON_INTERPRET=1`` is enough to interpret them.
"""

from __future__ import annotations

import triton
import triton.language as tl

# The combine function of ``tl.sum``: the interpreter recognises it and reduces with one numpy
# call, where any other combine function (a local ``_add``) runs element by element in Python.
from triton.language.standard import _sum_combine

INTERPRET: bool = bool(triton.knobs.runtime.interpret)

# Static tile sizes (BLOCK_C channels × BLOCK_P pixels) and warps, no autotuning yet: a per-shape
# table is to come from the GPU benchmark. The interpreter runs whole tiles as numpy arrays, so
# there fewer, larger programs are faster.
if INTERPRET:
    CONFIGS = {
        "stack": {"BLOCK_C": 16, "BLOCK_P": 64},
        "reduce": {"BLOCK_C": 16, "BLOCK_P": 64},
        "gather": {"BLOCK_C": 16, "BLOCK_P": 64},
    }
else:
    CONFIGS = {
        "stack": {"BLOCK_C": 16, "BLOCK_P": 128, "num_warps": 4},
        "reduce": {"BLOCK_C": 32, "BLOCK_P": 64, "num_warps": 4},
        "gather": {"BLOCK_C": 16, "BLOCK_P": 128, "num_warps": 4},
    }


@triton.jit
def _chunk_pixels(pid, BLOCK_P: tl.constexpr, P, RW, W, n0, y0):
    """The program's BLOCK_P flat pixel indices of a (b, r, W) chunk starting at image ``n0``,
    row ``y0`` -> (in range, image-in-chunk, row-in-chunk, image, row, column), all int64."""
    p = pid.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    bi = p // RW
    rem = p - bi * RW
    ry = rem // W
    return p < P, bi, ry, n0 + bi, y0 + ry, rem - ry * W


@triton.jit
def _inside(yy, xx, H, W):
    return (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)


@triton.jit
def _tap_stack_kernel(
    x_ptr, s_ptr, d_ptr, off_ptr,
    P, RW, H, W, C, K, n0, y0,
    sx_n, sx_c, sx_h, sx_w,
    ss_n, ss_k, ss_h, ss_w,
    sd_k, sd_c, sd_b, sd_r, sd_w,
    HAS_S: tl.constexpr, DIFFERENCE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """D[k, c, p] = S_k(m) · (X_c(m + o_k) - X_c(m)) (``DIFFERENCE``) or S_k(m) · X_c(m + o_k),
    zero where m + o_k is outside; S ≡ 1 without ``HAS_S``. Every element of D is written.

    One program: BLOCK_P pixels × BLOCK_C channels, all K taps, so the centre tile is loaded once.
    """
    ty = d_ptr.dtype.element_ty
    p_ok, bi, ry, n, yy, xx = _chunk_pixels(tl.program_id(0), BLOCK_P, P, RW, W, n0, y0)
    rc = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = rc < C
    tile_ok = c_ok[:, None] & p_ok[None, :]
    x_ch = rc.to(tl.int64)[:, None] * sx_c
    x_pix = n * sx_n + yy * sx_h + xx * sx_w
    s_pix = n * ss_n + yy * ss_h + xx * ss_w
    d_offs = rc.to(tl.int64)[:, None] * sd_c + (bi * sd_b + ry * sd_r + xx * sd_w)[None, :]
    if DIFFERENCE:
        xc = tl.load(x_ptr + x_ch + x_pix[None, :], mask=tile_ok, other=0.0).to(ty)
    for k in range(0, K):
        dy = tl.load(off_ptr + 2 * k).to(tl.int64)
        dx = tl.load(off_ptr + 2 * k + 1).to(tl.int64)
        ok = p_ok & _inside(yy + dy, xx + dx, H, W)
        m2 = c_ok[:, None] & ok[None, :]
        val = tl.load(x_ptr + x_ch + (x_pix + dy * sx_h + dx * sx_w)[None, :], mask=m2, other=0.0)
        val = val.to(ty)
        if DIFFERENCE:
            val = val - xc
        if HAS_S:
            sk = tl.load(s_ptr + s_pix + k * ss_k, mask=ok, other=0.0).to(ty)
            val = val * sk[None, :]
        tl.store(d_ptr + k * sd_k + d_offs, tl.where(m2, val, 0.0), mask=tile_ok)


@triton.jit
def _grad_s_kernel(
    u_ptr, g_ptr, o_ptr, off_ptr,
    P, RW, H, W, C, n0, y0,
    su_n, su_c, su_h, su_w,
    sg_k, sg_c, sg_b, sg_r, sg_w,
    so_k, so_b, so_r, so_w,
    DIFFERENCE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """out[k, p] = sum_c G[k, c, p] · (U_c(m + o_k) - U_c(m)) (or · U_c(m + o_k)), zero where
    m + o_k is outside: dS of Eq. 5, the tap differences recomputed from U, never stored.

    One program: BLOCK_P pixels of one tap k (grid axis 1), all channels in chunks of BLOCK_C.
    """
    ty = o_ptr.dtype.element_ty
    k = tl.program_id(1)
    p_ok, bi, ry, n, yy, xx = _chunk_pixels(tl.program_id(0), BLOCK_P, P, RW, W, n0, y0)
    dy = tl.load(off_ptr + 2 * k).to(tl.int64)
    dx = tl.load(off_ptr + 2 * k + 1).to(tl.int64)
    ok = p_ok & _inside(yy + dy, xx + dx, H, W)
    u_pix = n * su_n + yy * su_h + xx * su_w
    g_pix = k * sg_k + bi * sg_b + ry * sg_r + xx * sg_w
    acc = tl.full((BLOCK_C, BLOCK_P), 0.0, ty)
    for c0 in range(0, C, BLOCK_C):
        rc = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        m2 = (rc < C)[:, None] & ok[None, :]
        un = tl.load(
            u_ptr + rc[:, None] * su_c + (u_pix + dy * su_h + dx * su_w)[None, :], mask=m2
        ).to(ty)
        if DIFFERENCE:
            un = un - tl.load(u_ptr + rc[:, None] * su_c + u_pix[None, :], mask=m2).to(ty)
        g = tl.load(g_ptr + rc[:, None] * sg_c + g_pix[None, :], mask=m2).to(ty)
        acc += tl.where(m2, g * un, 0.0)
    out = tl.reduce(acc, 0, _sum_combine)
    tl.store(o_ptr + k * so_k + bi * so_b + ry * so_r + xx * so_w, out, mask=p_ok)


@triton.jit
def _grad_u_kernel(
    gu_ptr, g_ptr, s_ptr, off_ptr,
    P, RW, H, W, C, K, n0, ya, y0, y1,
    su_n, su_c, su_h, su_w,
    sg_k, sg_c, sg_b, sg_r, sg_w,
    ss_n, ss_k, ss_h, ss_w,
    HAS_S: tl.constexpr, DIFFERENCE: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """dU(m) += sum_k [T_k(m - o_k) - T_k(m)] (the second term only with ``DIFFERENCE``),
    T_k(q) = S_k(q) · G[k, :, q] for the pixels q of the chunk (rows y0:y1) whose neighbour
    q + o_k is inside: the adjoint of the stack kernel as a gather.

    The programs cover the chunk's rows widened by the kernel's reach (rows ``ya:`` of images
    ``n0:``), each output element is read and written by one program, and the chunks are
    launched one after the other, so no atomics are needed.
    """
    ty = gu_ptr.dtype.element_ty
    p_ok, bi, ry, n, yy, xx = _chunk_pixels(tl.program_id(0), BLOCK_P, P, RW, W, n0, ya)
    rc = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    c_ok = rc < C
    g_ch = rc[:, None] * sg_c
    s_img = n * ss_n
    g_img = bi * sg_b
    acc = tl.full((BLOCK_C, BLOCK_P), 0.0, ty)
    for k in range(0, K):
        dy = tl.load(off_ptr + 2 * k).to(tl.int64)
        dx = tl.load(off_ptr + 2 * k + 1).to(tl.int64)
        # m as the neighbour of q = m - o_k; m itself is inside, so q + o_k is.
        qy = yy - dy
        qx = xx - dx
        q_ok = p_ok & (qy >= y0) & (qy < y1) & (qx >= 0) & (qx < W)
        q2 = c_ok[:, None] & q_ok[None, :]
        t = tl.load(
            g_ptr + k * sg_k + g_ch + (g_img + (qy - y0) * sg_r + qx * sg_w)[None, :], mask=q2
        ).to(ty)
        if HAS_S:
            sq = tl.load(s_ptr + s_img + k * ss_k + qy * ss_h + qx * ss_w, mask=q_ok).to(ty)
            t = t * sq[None, :]
        acc += tl.where(q2, t, 0.0)
        if DIFFERENCE:
            # m as the centre: in the chunk, its neighbour m + o_k inside.
            m_ok = p_ok & (yy >= y0) & (yy < y1) & _inside(yy + dy, xx + dx, H, W)
            m2 = c_ok[:, None] & m_ok[None, :]
            t = tl.load(
                g_ptr + k * sg_k + g_ch + (g_img + (yy - y0) * sg_r + xx * sg_w)[None, :], mask=m2
            ).to(ty)
            if HAS_S:
                sm = tl.load(s_ptr + s_img + k * ss_k + yy * ss_h + xx * ss_w, mask=m_ok).to(ty)
                t = t * sm[None, :]
            acc -= tl.where(m2, t, 0.0)
    tile_ok = c_ok[:, None] & p_ok[None, :]
    o_ptrs = gu_ptr + rc[:, None] * su_c + (n * su_n + yy * su_h + xx * su_w)[None, :]
    tl.store(o_ptrs, tl.load(o_ptrs, mask=tile_ok) + acc, mask=tile_ok)


@triton.jit
def _d2_kernel(
    v_ptr, o_ptr, off_ptr,
    P, HW, H, W, C,
    sv_n, sv_c, sv_h, sv_w,
    so_n, so_k, so_h, so_w,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """d2[n, k, m] = sum_c (V_c(m + o_k) - V_c(m))^2 / C, zero where m + o_k is outside.

    One program: BLOCK_P pixels of the whole tensor, one tap k (grid axis 1), all channels.
    """
    ty = o_ptr.dtype.element_ty
    k = tl.program_id(1)
    p_ok, _, _, n, yy, xx = _chunk_pixels(tl.program_id(0), BLOCK_P, P, HW, W, 0, 0)
    dy = tl.load(off_ptr + 2 * k).to(tl.int64)
    dx = tl.load(off_ptr + 2 * k + 1).to(tl.int64)
    ok = p_ok & _inside(yy + dy, xx + dx, H, W)
    v_pix = n * sv_n + yy * sv_h + xx * sv_w
    acc = tl.full((BLOCK_C, BLOCK_P), 0.0, ty)
    for c0 in range(0, C, BLOCK_C):
        rc = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
        m2 = (rc < C)[:, None] & ok[None, :]
        vc = tl.load(v_ptr + rc[:, None] * sv_c + v_pix[None, :], mask=m2).to(ty)
        vn = tl.load(
            v_ptr + rc[:, None] * sv_c + (v_pix + dy * sv_h + dx * sv_w)[None, :], mask=m2
        ).to(ty)
        diff = tl.where(m2, vn - vc, 0.0)
        acc += diff * diff
    out = tl.reduce(acc, 0, _sum_combine) / C
    tl.store(o_ptr + n * so_n + k * so_k + yy * so_h + xx * so_w, out.to(ty), mask=p_ok)


@triton.jit
def _d2_backward_kernel(
    v_ptr, g_ptr, o_ptr, off_ptr,
    P, HW, H, W, C, K,
    sv_n, sv_c, sv_h, sv_w,
    sg_n, sg_k, sg_h, sg_w,
    so_n, so_c, so_h, so_w,
    BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """dV(m) = 2/C · sum_k [g_k(m - o_k)(V(m) - V(m - o_k)) - g_k(m)(V(m + o_k) - V(m))],
    each term where its pixel pair is inside. A gather: every element of dV
    is written once, by one program, without atomics.
    """
    ty = o_ptr.dtype.element_ty
    p_ok, _, _, n, yy, xx = _chunk_pixels(tl.program_id(0), BLOCK_P, P, HW, W, 0, 0)
    rc = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    c_ok = rc < C
    tile_ok = c_ok[:, None] & p_ok[None, :]
    v_ch = rc[:, None] * sv_c
    v_pix = n * sv_n + yy * sv_h + xx * sv_w
    g_pix = n * sg_n + yy * sg_h + xx * sg_w
    vc = tl.load(v_ptr + v_ch + v_pix[None, :], mask=tile_ok, other=0.0).to(ty)
    acc = tl.full((BLOCK_C, BLOCK_P), 0.0, ty)
    for k in range(0, K):
        dy = tl.load(off_ptr + 2 * k).to(tl.int64)
        dx = tl.load(off_ptr + 2 * k + 1).to(tl.int64)
        n_ok = p_ok & _inside(yy + dy, xx + dx, H, W)
        m2 = c_ok[:, None] & n_ok[None, :]
        vn = tl.load(v_ptr + v_ch + (v_pix + dy * sv_h + dx * sv_w)[None, :], mask=m2).to(ty)
        gm = tl.load(g_ptr + g_pix + k * sg_k, mask=n_ok).to(ty)
        acc -= tl.where(m2, gm[None, :] * (vn - vc), 0.0)
        q_ok = p_ok & _inside(yy - dy, xx - dx, H, W)
        q2 = c_ok[:, None] & q_ok[None, :]
        vq = tl.load(v_ptr + v_ch + (v_pix - dy * sv_h - dx * sv_w)[None, :], mask=q2).to(ty)
        gq = tl.load(g_ptr + g_pix - dy * sg_h - dx * sg_w + k * sg_k, mask=q_ok).to(ty)
        acc += tl.where(q2, gq[None, :] * (vc - vq), 0.0)
    o_ptrs = o_ptr + rc[:, None] * so_c + (n * so_n + yy * so_h + xx * so_w)[None, :]
    tl.store(o_ptrs, (acc * 2.0 / C).to(ty), mask=tile_ok)
