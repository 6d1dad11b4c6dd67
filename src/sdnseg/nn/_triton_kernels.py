"""Triton kernels of the semantic difference convolution (Eq. 5), private; see :mod:`._triton`.

Eq. 5, ``Y_m = sum_k W_k · S_k(m) · (U_{m+o_k} - U_m)``, is computed by two kernel families:

* the neighbour squared distance ``d2[k, m] = mean_c (V_c(m+o_k) - V_c(m))^2`` (forward, backward);
* the difference convolution, an implicit GEMM over (pixels) × (channels) whose reduction runs over
  (offsets k) × (channel chunks): forward, grad U (the transposed implicit GEMM, a gather, no
  atomics), grad S (fused ``sum_o dY · W_k (U_{m+o} - U_m)``, never materialising ``W_k U``) and
  grad W (``sum_m dY^T · S_k D_k`` split over pixel ranges into an fp32 workspace).

Layout contract with the wrappers: U, dY, V and every (N, C, H, W) feature output are
channels-last (pixel stride ``sp_*``, channel stride 1), so a tile (pixels × channels) loads
contiguous, vectorisable channel runs. S-shaped tensors (N, K, H, W) come with arbitrary strides.
The weight is ``Wt`` (K, Ci, Co), contiguous. Offsets are an int32 (K, 2) tensor of (dy, dx).

A neighbour outside the image contributes nothing: every load that touches ``m + o_k`` (or the
pixel ``m - o_k`` whose neighbour is ``m``) is masked by the in-image test, and the difference of
two masked loads is 0 - 0 = 0, so neither padding values nor S at such pixels ever enter a result.

The kernels call only Triton builtins and their own helpers, not ``triton.language``'s
``@jit`` standard library (``tl.zeros``, ``tl.sum``, ``tl.cdiv``): those are decorated when
``triton`` is imported, so if that happened without ``TRITON_INTERPRET=1`` they could not run
under the interpreter even after this module is re-imported with it (see the tests).

All accumulation is fp32. The dot operands are the input dtype (fp32, bf16, fp16); ``DOT_F32``
upcasts the (already rounded) operands to fp32 for the Triton interpreter, whose ``tl.dot`` reads
bfloat16 as its raw uint16 bits (triton 3.8), so the interpreter computes what the GPU computes.

Importing this module decorates the kernels: under ``TRITON_INTERPRET=1`` they become interpreted
functions, otherwise compiled JIT functions. That variable must be read at import time: the
``@triton.jit`` decorator fixes the choice when it runs (re-import to change it, as the tests do).
Autotuning is not fixed by a decorator, since the untuned kernel is kept beside the tuned one:
``SDNSEG_TRITON_AUTOTUNE=0`` is read at each launch (:func:`autotune_enabled`).

Length: over ~400 lines: every Triton kernel of SDC in one module, because the interpreter switch is decided once, when this module is imported.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRET: bool = bool(triton.knobs.runtime.interpret)


def autotune_enabled() -> bool:
    """Autotune on a GPU unless ``SDNSEG_TRITON_AUTOTUNE=0`` (read now); never interpreted."""
    return not INTERPRET and os.environ.get("SDNSEG_TRITON_AUTOTUNE", "1") != "0"


@triton.jit
def _add(a, b):
    return a + b


@triton.jit
def _pixel_coords(rm, HW, W):
    """Flat pixel index over (N, H, W) -> (n as int64, y, x)."""
    n = rm // HW
    p = rm - n * HW
    yy = p // W
    xx = p - yy * W
    return n.to(tl.int64), yy, xx


@triton.jit
def _inside(yy, xx, H, W):
    return (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)


@triton.jit
def _nsd_fwd_kernel(
    v_ptr, d2_ptr, off_ptr,
    NHW, HW, H, W, C, K, inv_c,
    sv_n, sv_h, sv_w,
    sd_n, sd_k, sd_h, sd_w,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_KP: tl.constexpr,
):  # fmt: skip
    """d2[n, k, y, x] = mean_c (V(m + o_k) - V(m))^2, zero where m + o_k is outside.

    One program: BLOCK_M pixels, all K offsets (accumulated in a (BLOCK_M, BLOCK_KP) tile so the
    centre tile is loaded once per channel chunk), all channels in chunks of BLOCK_C.
    """
    pid = tl.program_id(0)
    rm = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rm < NHW
    n, yy, xx = _pixel_coords(rm, HW, W)
    v_row = n * sv_n + yy * sv_h + xx * sv_w
    kcol = tl.arange(0, BLOCK_KP)
    acc = tl.full((BLOCK_M, BLOCK_KP), 0.0, tl.float32)
    for c0 in range(0, C, BLOCK_C):
        rc = c0 + tl.arange(0, BLOCK_C)
        c_ok = rc < C
        vc = tl.load(
            v_ptr + v_row[:, None] + rc[None, :], mask=row_ok[:, None] & c_ok[None, :], other=0.0
        ).to(tl.float32)
        for k in range(0, K):
            dy = tl.load(off_ptr + 2 * k)
            dx = tl.load(off_ptr + 2 * k + 1)
            ok = row_ok & _inside(yy + dy, xx + dx, H, W)
            m2 = ok[:, None] & c_ok[None, :]
            vn = tl.load(v_ptr + (v_row + dy * sv_h + dx * sv_w)[:, None] + rc[None, :], mask=m2)
            diff = tl.where(m2, vn.to(tl.float32) - vc, 0.0)
            part = tl.reduce(diff * diff, 1, _add)
            acc += tl.where(kcol[None, :] == k, part[:, None], 0.0)
    d_ptrs = d2_ptr + (n * sd_n + yy * sd_h + xx * sd_w)[:, None] + kcol[None, :] * sd_k
    tl.store(
        d_ptrs,
        (acc * inv_c).to(d2_ptr.dtype.element_ty),
        mask=row_ok[:, None] & (kcol[None, :] < K),
    )


@triton.jit
def _nsd_bwd_kernel(
    v_ptr, g_ptr, gv_ptr, off_ptr,
    NHW, HW, H, W, C, K, scale,
    sv_n, sv_h, sv_w,
    sg_n, sg_k, sg_h, sg_w,
    so_n, so_h, so_w,
    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    """dV(m) = scale · sum_k [g_k(m - o_k)(V(m) - V(m - o_k)) - g_k(m)(V(m + o_k) - V(m))].

    The gather form of the adjoint (each pixel collects from the pixels that used it), so every
    output element is written once, without atomics. ``scale = 2 / C``.
    """
    pid_m = tl.program_id(0)
    pid_c = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rm < NHW
    n, yy, xx = _pixel_coords(rm, HW, W)
    rc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = rc < C
    v_row = n * sv_n + yy * sv_h + xx * sv_w
    g_row = n * sg_n + yy * sg_h + xx * sg_w
    vc = tl.load(
        v_ptr + v_row[:, None] + rc[None, :], mask=row_ok[:, None] & c_ok[None, :], other=0.0
    ).to(tl.float32)
    acc = tl.full((BLOCK_M, BLOCK_C), 0.0, tl.float32)
    for k in range(0, K):
        dy = tl.load(off_ptr + 2 * k)
        dx = tl.load(off_ptr + 2 * k + 1)
        # m as the centre: its neighbour m + o_k must be inside.
        n_ok = row_ok & _inside(yy + dy, xx + dx, H, W)
        m2 = n_ok[:, None] & c_ok[None, :]
        vn = tl.load(v_ptr + (v_row + dy * sv_h + dx * sv_w)[:, None] + rc[None, :], mask=m2)
        gm = tl.load(g_ptr + g_row + k * sg_k, mask=n_ok, other=0.0).to(tl.float32)
        acc -= tl.where(m2, gm[:, None] * (vn.to(tl.float32) - vc), 0.0)
        # m as the neighbour of q = m - o_k, which must be inside.
        q_ok = row_ok & _inside(yy - dy, xx - dx, H, W)
        q2 = q_ok[:, None] & c_ok[None, :]
        vq = tl.load(v_ptr + (v_row - dy * sv_h - dx * sv_w)[:, None] + rc[None, :], mask=q2)
        gq = tl.load(g_ptr + g_row - dy * sg_h - dx * sg_w + k * sg_k, mask=q_ok, other=0.0)
        acc += tl.where(q2, gq.to(tl.float32)[:, None] * (vc - vq.to(tl.float32)), 0.0)
    o_ptrs = gv_ptr + (n * so_n + yy * so_h + xx * so_w)[:, None] + rc[None, :]
    tl.store(
        o_ptrs, (acc * scale).to(gv_ptr.dtype.element_ty), mask=row_ok[:, None] & c_ok[None, :]
    )


@triton.jit
def _dc_fwd_kernel(
    u_ptr, s_ptr, w_ptr, y_ptr, off_ptr,
    NHW, HW, H, W, CI, CO, K,
    su_n, su_h, su_w,
    ss_n, ss_k, ss_h, ss_w,
    sy_n, sy_h, sy_w,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """Y[m, o] = sum_{k, i} (S_k(m) (U_i(m + o_k) - U_i(m))) · Wt[k, i, o]: implicit GEMM.

    Tile (BLOCK_M pixels) × (BLOCK_N output channels); one flat reduction loop over
    (Ci chunk, k), k fastest so the centre tile of a chunk stays hot in L1 across the K offsets.
    The A operand ``S_k ⊙ (U_shift - U_centre)`` is formed in registers and never stored.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rm < NHW
    n, yy, xx = _pixel_coords(rm, HW, W)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < CO
    u_row = n * su_n + yy * su_h + xx * su_w
    s_row = n * ss_n + yy * ss_h + xx * ss_w
    dot_ty = u_ptr.dtype.element_ty
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for t in range(0, ((CI + BLOCK_K - 1) // BLOCK_K) * K):
        k = t % K
        rc = (t // K) * BLOCK_K + tl.arange(0, BLOCK_K)
        c_ok = rc < CI
        dy = tl.load(off_ptr + 2 * k)
        dx = tl.load(off_ptr + 2 * k + 1)
        ok = row_ok & _inside(yy + dy, xx + dx, H, W)
        m2 = ok[:, None] & c_ok[None, :]
        uc = tl.load(u_ptr + u_row[:, None] + rc[None, :], mask=m2, other=0.0)
        un = tl.load(
            u_ptr + (u_row + dy * su_h + dx * su_w)[:, None] + rc[None, :], mask=m2, other=0.0
        )
        sk = tl.load(s_ptr + s_row + k * ss_k, mask=ok, other=0.0).to(tl.float32)
        a = ((un.to(tl.float32) - uc.to(tl.float32)) * sk[:, None]).to(dot_ty)
        b = tl.load(
            w_ptr + k * CI * CO + rc[:, None] * CO + rn[None, :],
            mask=c_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        if DOT_F32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PREC)
    y_ptrs = y_ptr + (n * sy_n + yy * sy_h + xx * sy_w)[:, None] + rn[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & n_ok[None, :])


@triton.jit
def _dc_bwd_u_kernel(
    g_ptr, s_ptr, w_ptr, gu_ptr, off_ptr,
    NHW, HW, H, W, CI, CO, K,
    sg_n, sg_h, sg_w,
    ss_n, ss_k, ss_h, ss_w,
    so_n, so_h, so_w,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dU[m, i] = sum_{k, o} (S_k(q) dY[q, o] [q in] - S_k(m) dY[m, o] [m + o_k in]) W_k[o, i].

    with ``q = m - o_k`` (the pixel whose k-th neighbour is m): the transposed implicit GEMM in
    gather form, both terms folded into one A operand so each (k, Co chunk) costs one dot.
    Tile (BLOCK_M pixels) × (BLOCK_N input channels); reduction over (Co chunk, k).
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rm < NHW
    n, yy, xx = _pixel_coords(rm, HW, W)
    ri = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    i_ok = ri < CI
    g_row = n * sg_n + yy * sg_h + xx * sg_w
    s_row = n * ss_n + yy * ss_h + xx * ss_w
    dot_ty = g_ptr.dtype.element_ty
    acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
    for t in range(0, ((CO + BLOCK_K - 1) // BLOCK_K) * K):
        k = t % K
        ro = (t // K) * BLOCK_K + tl.arange(0, BLOCK_K)
        o_ok = ro < CO
        dy = tl.load(off_ptr + 2 * k)
        dx = tl.load(off_ptr + 2 * k + 1)
        c_valid = row_ok & _inside(yy + dy, xx + dx, H, W)
        q_valid = row_ok & _inside(yy - dy, xx - dx, H, W)
        gm = tl.load(
            g_ptr + g_row[:, None] + ro[None, :], mask=c_valid[:, None] & o_ok[None, :], other=0.0
        )
        gq = tl.load(
            g_ptr + (g_row - dy * sg_h - dx * sg_w)[:, None] + ro[None, :],
            mask=q_valid[:, None] & o_ok[None, :],
            other=0.0,
        )
        sm = tl.load(s_ptr + s_row + k * ss_k, mask=c_valid, other=0.0).to(tl.float32)
        s_q = s_row - dy * ss_h - dx * ss_w + k * ss_k
        sq = tl.load(s_ptr + s_q, mask=q_valid, other=0.0).to(tl.float32)
        a = (gq.to(tl.float32) * sq[:, None] - gm.to(tl.float32) * sm[:, None]).to(dot_ty)
        # B[o, i] = W_k[o, i] = Wt[k, i, o]
        b = tl.load(
            w_ptr + k * CI * CO + ri[None, :] * CO + ro[:, None],
            mask=o_ok[:, None] & i_ok[None, :],
            other=0.0,
        )
        if DOT_F32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PREC)
    o_ptrs = gu_ptr + (n * so_n + yy * so_h + xx * so_w)[:, None] + ri[None, :]
    tl.store(o_ptrs, acc.to(gu_ptr.dtype.element_ty), mask=row_ok[:, None] & i_ok[None, :])


@triton.jit
def _dc_bwd_s_kernel(
    u_ptr, g_ptr, w_ptr, gs_ptr, off_ptr,
    NHW, HW, H, W, CI, CO,
    su_n, su_h, su_w,
    sg_n, sg_h, sg_w,
    so_n, so_k, so_h, so_w,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """dS_k(m) = sum_o dY[m, o] · (W_k (U(m + o_k) - U(m)))[o], fused.

    Program: BLOCK_M pixels for one offset k (grid axis 1). For each Co chunk of BLOCK_N, the
    GEMM ``D_k · Wt_k`` over Ci chunks of BLOCK_K runs in registers and is immediately reduced
    against dY, so ``P_k = W_k U`` is never materialised. Deterministic (no atomics).
    """
    pid_m = tl.program_id(0)
    k = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rm < NHW
    n, yy, xx = _pixel_coords(rm, HW, W)
    dy = tl.load(off_ptr + 2 * k)
    dx = tl.load(off_ptr + 2 * k + 1)
    ok = row_ok & _inside(yy + dy, xx + dx, H, W)
    u_row = n * su_n + yy * su_h + xx * su_w
    un_row = u_row + dy * su_h + dx * su_w
    g_row = n * sg_n + yy * sg_h + xx * sg_w
    dot_ty = u_ptr.dtype.element_ty
    gs = tl.full((BLOCK_M,), 0.0, tl.float32)
    for o0 in range(0, CO, BLOCK_N):
        ro = o0 + tl.arange(0, BLOCK_N)
        o_ok = ro < CO
        acc = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32)
        for c0 in range(0, CI, BLOCK_K):
            rc = c0 + tl.arange(0, BLOCK_K)
            c_ok = rc < CI
            m2 = ok[:, None] & c_ok[None, :]
            uc = tl.load(u_ptr + u_row[:, None] + rc[None, :], mask=m2, other=0.0)
            un = tl.load(u_ptr + un_row[:, None] + rc[None, :], mask=m2, other=0.0)
            a = (un.to(tl.float32) - uc.to(tl.float32)).to(dot_ty)
            b = tl.load(
                w_ptr + k * CI * CO + rc[:, None] * CO + ro[None, :],
                mask=c_ok[:, None] & o_ok[None, :],
                other=0.0,
            )
            if DOT_F32:
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=PREC)
        g = tl.load(
            g_ptr + g_row[:, None] + ro[None, :], mask=ok[:, None] & o_ok[None, :], other=0.0
        )
        gs += tl.reduce(acc * g.to(tl.float32), 1, _add)
    o_ptrs = gs_ptr + n * so_n + k * so_k + yy * so_h + xx * so_w
    tl.store(o_ptrs, gs.to(gs_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def _dc_bwd_w_kernel(
    u_ptr, s_ptr, g_ptr, ws_ptr, off_ptr,
    NHW, HW, H, W, CI, CO, K, PIX_PER_SPLIT,
    su_n, su_h, su_w,
    ss_n, ss_k, ss_h, ss_w,
    sg_n, sg_h, sg_w,
    BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_M: tl.constexpr,
    DOT_F32: tl.constexpr, PREC: tl.constexpr,
):  # fmt: skip
    """ws[split, k, i, o] = sum_{m in split} S_k(m) (U_i(m + o_k) - U_i(m)) · dY[m, o].

    Grid: (Ci tiles × Co tiles, K, splits). Each split reduces one contiguous pixel range and
    writes its own fp32 slot; the wrapper sums the slots (a deterministic two-stage split-K).
    """
    pid_t = tl.program_id(0)
    k = tl.program_id(1)
    split = tl.program_id(2)
    n_co_tiles = (CO + BLOCK_CO - 1) // BLOCK_CO
    ri = (pid_t // n_co_tiles) * BLOCK_CI + tl.arange(0, BLOCK_CI)
    ro = (pid_t % n_co_tiles) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    i_ok = ri < CI
    o_ok = ro < CO
    dy = tl.load(off_ptr + 2 * k)
    dx = tl.load(off_ptr + 2 * k + 1)
    start = split * PIX_PER_SPLIT
    end = tl.minimum(start + PIX_PER_SPLIT, NHW)
    dot_ty = u_ptr.dtype.element_ty
    acc = tl.full((BLOCK_CI, BLOCK_CO), 0.0, tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rm = m0 + tl.arange(0, BLOCK_M)
        row_ok = rm < end
        n, yy, xx = _pixel_coords(rm, HW, W)
        ok = row_ok & _inside(yy + dy, xx + dx, H, W)
        u_row = n * su_n + yy * su_h + xx * su_w
        m2 = i_ok[:, None] & ok[None, :]
        # A^T tile (channels × pixels), loaded transposed so the dot needs no permute.
        uc = tl.load(u_ptr + ri[:, None] + u_row[None, :], mask=m2, other=0.0)
        un = tl.load(
            u_ptr + ri[:, None] + (u_row + dy * su_h + dx * su_w)[None, :], mask=m2, other=0.0
        )
        s_row = n * ss_n + k * ss_k + yy * ss_h + xx * ss_w
        sk = tl.load(s_ptr + s_row, mask=ok, other=0.0).to(tl.float32)
        a = ((un.to(tl.float32) - uc.to(tl.float32)) * sk[None, :]).to(dot_ty)
        g = tl.load(
            g_ptr + (n * sg_n + yy * sg_h + xx * sg_w)[:, None] + ro[None, :],
            mask=row_ok[:, None] & o_ok[None, :],
            other=0.0,
        )
        if DOT_F32:
            a = a.to(tl.float32)
            g = g.to(tl.float32)
        acc = tl.dot(a, g, acc, input_precision=PREC)
    base = (split * K + k).to(tl.int64) * CI * CO
    tl.store(
        ws_ptr + base + ri[:, None] * CO + ro[None, :],
        acc,
        mask=i_ok[:, None] & o_ok[None, :],
    )


# (block_a, block_b, block_c, num_warps, num_stages); the first entry is the untuned default.
# Chosen by compiling every entry for sm_90 ahead of time (ptxas, no GPU): none of the defaults
# spills registers for fp32 (IEEE or TF32) or bf16 when the channel counts are multiples of 16;
# the larger entries are there for the autotuner, which drops any that fail on a smaller GPU.
_FWD_BLOCKS = [
    (128, 64, 32, 4, 3),
    (64, 64, 32, 4, 3),
    (128, 128, 32, 8, 3),
    (64, 128, 32, 4, 3),
    (128, 128, 64, 8, 2),
    (64, 64, 64, 4, 2),
]
_DGRAD_BLOCKS = [
    (64, 64, 32, 4, 3),
    (128, 128, 32, 8, 2),
    (128, 64, 32, 4, 3),
    (64, 128, 32, 4, 3),
    (64, 64, 64, 4, 2),
    (128, 128, 16, 8, 3),
]
_SGRAD_BLOCKS = [
    (64, 64, 32, 4, 3),
    (128, 64, 32, 8, 2),
    (64, 64, 32, 4, 2),
    (128, 128, 32, 8, 3),
    (64, 128, 32, 4, 3),
]
_WGRAD_BLOCKS = [
    (64, 64, 64, 4, 3),
    (128, 128, 32, 8, 3),
    (64, 64, 32, 4, 3),
    (128, 128, 64, 8, 2),
    (64, 128, 64, 4, 3),
]
_NSD_FWD_BLOCKS = [(64, 32, 0, 4, 2), (128, 32, 0, 4, 2), (32, 64, 0, 4, 2), (128, 64, 0, 8, 2)]
_NSD_BWD_BLOCKS = [(64, 32, 0, 4, 2), (128, 32, 0, 4, 2), (64, 64, 0, 4, 2), (128, 64, 0, 8, 2)]

# Untuned launch parameters: the first config of each list on a GPU; small tiles under the
# interpreter, where every program is a numpy loop and tiles past tiny test shapes only cost time.
_GEMM_NAMES = ("BLOCK_M", "BLOCK_N", "BLOCK_K")
_WGRAD_NAMES = ("BLOCK_CI", "BLOCK_CO", "BLOCK_M")
_NSD_NAMES = ("BLOCK_M", "BLOCK_C")


def _default(blocks, names) -> dict[str, int]:
    *sizes, warps, stages = blocks[0]
    return dict(zip(names, sizes, strict=False)) | {"num_warps": warps, "num_stages": stages}


if INTERPRET:
    DEFAULTS = {
        "fwd": {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16},
        "dgrad": {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16},
        "sgrad": {"BLOCK_M": 32, "BLOCK_N": 16, "BLOCK_K": 16},
        "wgrad": {"BLOCK_CI": 16, "BLOCK_CO": 16, "BLOCK_M": 32},
        "nsd_fwd": {"BLOCK_M": 32, "BLOCK_C": 16},
        "nsd_bwd": {"BLOCK_M": 32, "BLOCK_C": 16},
    }
else:
    DEFAULTS = {
        "fwd": _default(_FWD_BLOCKS, _GEMM_NAMES),
        "dgrad": _default(_DGRAD_BLOCKS, _GEMM_NAMES),
        "sgrad": _default(_SGRAD_BLOCKS, _GEMM_NAMES),
        "wgrad": _default(_WGRAD_BLOCKS, _WGRAD_NAMES),
        "nsd_fwd": _default(_NSD_FWD_BLOCKS, _NSD_NAMES),
        "nsd_bwd": _default(_NSD_BWD_BLOCKS, _NSD_NAMES),
    }


def _configs(blocks: list[tuple[int, ...]], names: tuple[str, ...]) -> list[triton.Config]:
    return [
        triton.Config(dict(zip(names, sizes, strict=False)), num_warps=warps, num_stages=stages)
        for *sizes, warps, stages in blocks
    ]


def _tuned(kernel, configs, key):
    """The autotuned kernel for a GPU (keyed on channel widths and K; dtypes are always in the
    key); None under the interpreter, which runs the small default tiles."""
    if INTERPRET:
        return None
    return triton.autotune(configs=configs, key=key)(kernel)


dc_fwd_tuned = _tuned(_dc_fwd_kernel, _configs(_FWD_BLOCKS, _GEMM_NAMES), ["CI", "CO", "K", "PREC"])
dc_bwd_u_tuned = _tuned(
    _dc_bwd_u_kernel, _configs(_DGRAD_BLOCKS, _GEMM_NAMES), ["CI", "CO", "K", "PREC"]
)
dc_bwd_s_tuned = _tuned(
    _dc_bwd_s_kernel, _configs(_SGRAD_BLOCKS, _GEMM_NAMES), ["CI", "CO", "PREC"]
)
dc_bwd_w_tuned = _tuned(
    _dc_bwd_w_kernel,
    _configs(_WGRAD_BLOCKS, _WGRAD_NAMES),
    ["CI", "CO", "K", "PREC"],
)
nsd_fwd_tuned = _tuned(_nsd_fwd_kernel, _configs(_NSD_FWD_BLOCKS, _NSD_NAMES), ["C", "K"])
nsd_bwd_tuned = _tuned(_nsd_bwd_kernel, _configs(_NSD_BWD_BLOCKS, _NSD_NAMES), ["C", "K"])

KERNELS = {
    "dc_fwd": (_dc_fwd_kernel, dc_fwd_tuned, "fwd"),
    "dc_bwd_u": (_dc_bwd_u_kernel, dc_bwd_u_tuned, "dgrad"),
    "dc_bwd_s": (_dc_bwd_s_kernel, dc_bwd_s_tuned, "sgrad"),
    "dc_bwd_w": (_dc_bwd_w_kernel, dc_bwd_w_tuned, "wgrad"),
    "nsd_fwd": (_nsd_fwd_kernel, nsd_fwd_tuned, "nsd_fwd"),
    "nsd_bwd": (_nsd_bwd_kernel, nsd_bwd_tuned, "nsd_bwd"),
}
