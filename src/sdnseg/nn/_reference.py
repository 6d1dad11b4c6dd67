"""The plain loop reference of the semantic difference convolution (Eq. 5), ``backend="reference"``.

``Y_m = sum_k W_k · S(V_{m+k}, V_m) · (U_{m+k} - U_m)``, computed the slow, obvious way: one term per
kernel tap, each neighbour fetched by an explicit shift with an explicit in-image mask, summed in
the input's dtype with plain autograd (so ``gradcheck`` runs through it; in float64 it is exact up
to rounding). It is written independently of the fast paths (:mod:`sdnseg.nn._gemm`,
:mod:`sdnseg.nn._triton`): its own tap enumeration, no padding, no product layouts, no masks
shared with them. Tests and benchmarks check every other path against it.

The two halves have the signatures of their fast twins, so the dispatch can route to them:

* :func:`neighbour_squared_distance` ``(v, offsets) -> d2`` (N, K, H, W);
* :func:`difference_conv` ``(u, s, weight, offsets) -> y`` (N, Co, H, W), no bias.

:func:`sdc_reference` is the whole operator, with its own similarity formulas (Eq. 2), and
:func:`sc_reference` the similarity-weighted convolution without the difference
``Y_m = sum_k W_k · S(V_{m+k}, V_m) · U_{m+k}`` over every tap, centre included (the fourth cell of
the Table 3(a) factorial; the pixel-adaptive convolution of Su et al., CVPR 2019, unnormalised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Offset = tuple[int, int]


def taps(kernel_size: tuple[int, int], dilation: int) -> list[tuple[int, int, int, int]]:
    """``(i, j, dy, dx)`` for every tap ``(i, j)`` of a kh×kw kernel but the centre, row-major."""
    kh, kw = kernel_size
    return [
        (i, j, (i - kh // 2) * dilation, (j - kw // 2) * dilation)
        for i in range(kh)
        for j in range(kw)
        if (i, j) != (kh // 2, kw // 2)
    ]


def offsets(kernel_size: tuple[int, int], dilation: int) -> list[Offset]:
    """The ``(dy, dx)`` pixel offsets of :func:`taps`."""
    return [(dy, dx) for _, _, dy, dx in taps(kernel_size, dilation)]


def shifted_and_inside(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[..., m + (dy, dx)]`` (zero where outside) and the (H, W) mask of neighbours inside.

    Output pixel ``m = (y, x)`` has its neighbour inside for ``0 <= y + dy < H`` and
    ``0 <= x + dx < W``; those rows and columns are copied, everything else stays zero.
    """
    h, w = x.shape[-2:]
    y0, y1 = max(0, -dy), min(h, h - dy)
    x0, x1 = max(0, -dx), min(w, w - dx)
    shifted = torch.zeros_like(x)
    inside = x.new_zeros(h, w)
    if y0 < y1 and x0 < x1:
        shifted[..., y0:y1, x0:x1] = x[..., y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        inside[y0:y1, x0:x1] = 1
    return shifted, inside


def neighbour_squared_distance(v: torch.Tensor, offsets: Sequence[Offset]) -> torch.Tensor:
    """``d2[:, k, m] = |V_{m+o_k} - V_m|^2 / Cf`` (N, K, H, W), zero where the neighbour is outside."""
    n, cf, h, w = v.shape
    terms = []
    for dy, dx in offsets:
        shifted, inside = shifted_and_inside(v, dy, dx)
        terms.append(((shifted - v) ** 2).sum(1) / cf * inside)
    return torch.stack(terms, 1) if terms else v.new_zeros(n, 0, h, w)


def difference_conv(
    u: torch.Tensor, s: torch.Tensor, weight: torch.Tensor, offsets: Sequence[Offset]
) -> torch.Tensor:
    """Eq. 5 given S: ``sum_k W_k · S_k ⊙ (U_{m+o_k} - U_m)``, a zero term where outside.

    ``offsets`` are in the row-major order of the non-centre taps of ``weight`` (Co, Ci, kh, kw).
    """
    n, _, h, w = u.shape
    kh, kw = weight.shape[2:]
    y = u.new_zeros(n, weight.shape[0], h, w)
    kernel_taps = [(i, j) for i, j, _, _ in taps((kh, kw), 1)]
    for k, ((dy, dx), (i, j)) in enumerate(zip(offsets, kernel_taps, strict=True)):
        shifted, inside = shifted_and_inside(u, dy, dx)
        d = (shifted - u) * inside * s[:, k : k + 1]
        y = y + torch.einsum("oi,nihw->nohw", weight[:, :, i, j], d)
    return y


def similarity_reference(
    d2: torch.Tensor,
    similarity: str | Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor],
    lam: torch.Tensor | float,
) -> torch.Tensor:
    """``S = g(d2)``: Perona–Malik ``1 / sqrt(1 + d2 / lam^2)`` (Eq. 2), ``exp(-d2 / lam^2)``, 1."""
    if similarity == "perona_malik":
        return 1 / torch.sqrt(1 + d2 / lam**2)
    if similarity == "exp":
        return torch.exp(-d2 / lam**2)
    if similarity == "ones":
        return torch.ones_like(d2)
    return similarity(d2, lam)


def neighbour_similarity_reference(
    v: torch.Tensor,
    kernel_size: tuple[int, int],
    dilation: int = 1,
    similarity: str | Callable = "perona_malik",
    lam: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``S(V_{m+k}, V_m)`` for every non-centre tap ``k``, (N, K, H, W)."""
    d2 = neighbour_squared_distance(v, offsets(kernel_size, dilation))
    return similarity_reference(d2, similarity, lam)


def sdc_reference(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
    similarity: str | Callable = "perona_malik",
    lam: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """The semantic difference convolution, Eq. 5, ``(N, Co, H, W)``; arguments as
    :func:`sdnseg.nn.functional.semantic_difference_conv2d` (no argument checks)."""
    kernel_size = (weight.shape[2], weight.shape[3])
    s = neighbour_similarity_reference(v, kernel_size, dilation, similarity, lam)
    y = difference_conv(u, s, weight, offsets(kernel_size, dilation))
    return y if bias is None else y + bias[None, :, None, None]


def sc_reference(
    u: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilation: int = 1,
    similarity: str | Callable = "perona_malik",
    lam: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``Y_m = sum_k W_k · S(V_{m+k}, V_m) · U_{m+k} (+ bias)`` over all kh×kw taps, ``(N, Co, H, W)``.

    A neighbour outside the image contributes nothing (zero padding of U); at the centre
    ``d2 = 0``. Arguments as :func:`sdnseg.nn.functional.semantic_conv2d` (no argument checks).
    """
    n, cf, h, w = v.shape
    kh, kw = weight.shape[2:]
    y = u.new_zeros(n, weight.shape[0], h, w)
    for i in range(kh):
        for j in range(kw):
            dy, dx = (i - kh // 2) * dilation, (j - kw // 2) * dilation
            u_k, _ = shifted_and_inside(u, dy, dx)
            v_k, _ = shifted_and_inside(v, dy, dx)
            d2 = ((v_k - v) ** 2).sum(1, keepdim=True) / cf
            s = similarity_reference(d2, similarity, lam)
            y = y + torch.einsum("oi,nihw->nohw", weight[:, :, i, j], s * u_k)
    return y if bias is None else y + bias[None, :, None, None]
