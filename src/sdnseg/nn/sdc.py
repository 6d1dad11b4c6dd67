"""Modules over the difference convolutions: SDC (Eq. 5 of Tan, Wu, Pi) and CDC (Yu et al. 2020),
and SDC without the difference (the similarity-weighted convolution of the Table 3a factorial)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn import functional as SF
from sdnseg.nn._dispatch import check_backend


def _init_like_conv2d(weight: nn.Parameter, bias: nn.Parameter | None) -> None:
    # The same initialisation as nn.Conv2d.reset_parameters.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


def _pair(kernel_size: int | tuple[int, int]) -> tuple[int, int]:
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if kh % 2 == 0 or kw % 2 == 0 or kh < 1 or kw < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size!r}")
    return kh, kw


def _check_backend(backend: str | None) -> str | None:
    return None if backend is None else check_backend(backend)


def _backend_repr(backend: str | None) -> str:
    # None follows the default at call time; show what that is now.
    if backend is None:
        return f"backend=None (default: {SF.default_backend()})"
    return f"backend={backend!r}"


class SemanticDifferenceConv2d(nn.Module):
    """Semantic difference convolution (SDC), Eq. 5: ``forward(u, v)``.

    ``Y_m = sum_k W_k · S(V_{m+k}, V_m) · (U_{m+k} - U_m) + b``. A guidance ``v`` of another spatial
    size is resized bilinearly to ``u``'s (Eq. 5 needs V at U's resolution; Sec. 4.2.2 resizes
    bilinearly wherever sizes differ). Any number of guidance channels.

    Args:
        in_channels, out_channels: Ci and Co.
        kernel_size: odd int or pair (default 3, the paper's).
        dilation: spacing of the taps.
        similarity: see :func:`sdnseg.nn.functional.semantic_difference_conv2d`.
        lam: initial edge threshold λ of the similarity.
        learn_lam: learn λ, kept positive as ``softplus`` of an unconstrained parameter.
        bias: add a learnable bias.
        backend: ``"auto"``, ``"reference"``, ``"torch"``, ``"torch-only"`` or ``"triton"`` for
            this module, or None for the default at call time (see :mod:`sdnseg.nn.functional`).

    Shape:
        u (N, Ci, H, W), v (N, Cf, H', W') -> (N, Co, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        dilation: int = 1,
        similarity: SF.Similarity = "perona_malik",
        lam: float = 1.0,
        learn_lam: bool = True,
        bias: bool = True,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.backend = _check_backend(backend)
        SF.resolve_similarity(similarity)
        if not lam > 0:
            raise ValueError(f"lam must be positive, got {lam!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dilation = dilation
        self.similarity = similarity
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # softplus^-1(lam); written with expm1 so small lam stays exact.
        raw = torch.tensor(math.log(math.expm1(lam)) if lam < 20 else lam)
        if learn_lam:
            self.raw_lam = nn.Parameter(raw)
        else:
            self.register_buffer("raw_lam", raw)
        _init_like_conv2d(self.weight, self.bias)

    @property
    def lam(self) -> torch.Tensor:
        """λ of the similarity, always positive."""
        return F.softplus(self.raw_lam)

    def _guidance(self, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` at ``u``'s size and λ in ``u``'s dtype: the V and λ of Eq. 5 for this ``u``."""
        if v.dim() == 4 and v.shape[-2:] != u.shape[-2:]:
            v = F.interpolate(v, size=u.shape[-2:], mode="bilinear", align_corners=False)
        return v, self.lam.to(u.dtype)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v, lam = self._guidance(u, v)
        return SF.semantic_difference_conv2d(
            u, v, self.weight, self.bias, self.dilation, self.similarity, lam, self.backend
        )

    def similarity_map(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """S(V_{m+k}, V_m) for every non-centre tap, (N, K, H, W), as ``forward(u, v)`` uses it:
        ``v`` resized to ``u``'s size and this module's λ."""
        v, lam = self._guidance(u, v)
        return SF.neighbour_similarity(
            v, self.kernel_size, self.dilation, self.similarity, lam, backend=self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, similarity={self.similarity!r}, "
            f"{_backend_repr(self.backend)}"
        )


class SemanticConv2d(SemanticDifferenceConv2d):
    """Similarity-weighted convolution without the difference term: ``forward(u, v)``.

    ``Y_m = sum_k W_k · S(V_{m+k}, V_m) · U_{m+k} + b`` over every tap (centre included,
    :func:`sdnseg.nn.functional.semantic_conv2d`): SDC with ``U_{m+k}`` for ``U_{m+k} - U_m``,
    the (no difference, similarity) cell of the Table 3(a) factorial. Arguments, guidance
    resizing, λ and :meth:`similarity_map` (the non-centre taps; the centre's S is ``g(0) = 1``)
    are SDC's.

    Shape:
        u (N, Ci, H, W), v (N, Cf, H', W') -> (N, Co, H, W).
    """

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v, lam = self._guidance(u, v)
        return SF.semantic_conv2d(
            u, v, self.weight, self.bias, self.dilation, self.similarity, lam, self.backend
        )


class CentralDifferenceConv2d(nn.Conv2d):
    """Central difference convolution (Yu et al., CVPR 2020): ``Y_m = sum_k W_k (U_{m+k} - θ U_m)``.

    Same-size output; neighbours outside the image contribute nothing, as in SDC.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        dilation: int = 1,
        theta: float = 0.7,
        bias: bool = True,
        backend: str | None = None,
    ) -> None:
        kh, kw = _pair(kernel_size)
        super().__init__(
            in_channels,
            out_channels,
            (kh, kw),
            padding=((kh // 2) * dilation, (kw // 2) * dilation),
            dilation=dilation,
            bias=bias,
        )
        self.theta = theta
        self.backend = _check_backend(backend)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return SF.central_difference_conv2d(
            u, self.weight, self.bias, self.dilation[0], self.theta, self.backend
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}, {_backend_repr(self.backend)}"
