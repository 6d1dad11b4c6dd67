"""Slow, plain reference implementations, written independently of the library's fast paths.

The SDC (Eq. 5) loop reference is part of the library, as ``backend="reference"``:
:mod:`sdnseg.nn._reference`. The CDC and the classical solver (Eq. 3-4) references stay here.
"""

from __future__ import annotations

import torch


def _neighbours(kh: int, kw: int, dilation: int):
    for i in range(kh):
        for j in range(kw):
            yield i, j, (i - kh // 2) * dilation, (j - kw // 2) * dilation


def cdc_reference(u, weight, bias=None, dilation=1, theta=0.7):
    """CDC, Y_m = sum_k W_k (U_{m+k} - theta U_m) over in-image neighbours only."""
    n, ci, h, w = u.shape
    co, _, kh, kw = weight.shape
    y = u.new_zeros(n, co, h, w)
    for yy in range(h):
        for xx in range(w):
            for i, j, dy, dx in _neighbours(kh, kw, dilation):
                if 0 <= yy + dy < h and 0 <= xx + dx < w:
                    term = u[:, :, yy + dy, xx + dx] - theta * u[:, :, yy, xx]
                    y[:, :, yy, xx] += term @ weight[:, :, i, j].T
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y


def diffusion_reference(u, v, steps, alpha, beta, lam, connectivity):
    """Eq. 3-4 pixel by pixel; v None means self-guided."""
    if connectivity == 4:
        offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    else:
        offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    n, c, h, w = u.shape
    for t in range(steps):
        a = alpha[t] if isinstance(alpha, (list, tuple)) else alpha
        b = beta[t] if isinstance(beta, (list, tuple)) else beta
        guide = u if v is None else v
        new = torch.zeros_like(u)
        for yy in range(h):
            for xx in range(w):
                acc = u.new_zeros(n, c)
                for dy, dx in offsets:
                    ny, nx = yy + dy, xx + dx
                    if 0 <= ny < h and 0 <= nx < w:
                        d2 = ((guide[:, :, ny, nx] - guide[:, :, yy, xx]) ** 2).mean(1)
                        g = 1 / torch.sqrt(1 + d2 / lam**2)
                        acc = acc + g[:, None] * (u[:, :, ny, nx] - u[:, :, yy, xx])
                new[:, :, yy, xx] = a * u[:, :, yy, xx] + b * acc
        u = new
    return u
