"""The SDN module (Sec. 4.2) and the necks that place it in a segmentor (Sec. 4.3, Eq. 6).

:class:`SingleScaleSDN` (Fig. 4a) and :class:`MultiScaleSDN` (Fig. 4b, Eq. 6) are the paper's two
placements; :class:`ConcatSDN` is the single-scale one on the resized concatenation of all
features, the input of decoders that read an HRNet that way (OCRNet).

Normalisation and activation are not given by the paper; we chose:

* after the SDC (or the ablation's conv/CDC/SC): BatchNorm, then ReLU, as after every conv of the
  ResNet/FCN family, so that the difference response enters the fusion at a learned scale;
* the fusion ``F_sdn = Conv1x1([U, Y])`` (Sec. 4.2.2) without bias, then BatchNorm and ReLU, so that
  the decoder receives non-negative features of the kind a ResNet stage gives it.

``norm_layer`` / ``act_layer`` are callables, so a user can swap them (e.g. ``nn.Identity``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn.functional import Similarity
from sdnseg.nn.sdc import CentralDifferenceConv2d, SemanticConv2d, SemanticDifferenceConv2d

OPERATORS = ("sdc", "conv", "cdc", "sc")
# The operators that read the guidance V.
GUIDED = ("sdc", "sc")


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    stride: int = 1,
    norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    act_layer: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias) -> norm -> activation, the ConvModule of the reference configs."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        norm_layer(out_channels),
        act_layer(),
    )


class SDN(nn.Module):
    """Semantic Diffusion Network, Sec. 4.2: ``F_sdn = Conv1x1([U, SDC(U, V)])``, same shape as U.

    Args:
        channels: channels of U (and of the output).
        sdc_channels: width of Y. ``None`` is the paper's form (Y as wide as U). A smaller value first
            reduces U by a 1×1 conv, runs the SDC at that width and fuses
            ``channels + sdc_channels -> channels``: our deviation that keeps wide features cheap.
        operator: ``"sdc"`` (the paper), or for the ablation of Table 3(a) ``"conv"`` (vanilla conv on
            U), ``"cdc"`` (central difference conv on U with ``theta``) or ``"sc"`` (the
            similarity-weighted conv of U guided by V without the difference,
            :class:`~sdnseg.nn.sdc.SemanticConv2d`); same kernel, same place. With
            ``similarity="ones"`` on ``"sdc"`` these make the 2×2 factorial {difference} ×
            {similarity}: conv (no, no), sdc+ones (yes, no), sc (no, yes), sdc (yes, yes).
        kernel_size, dilation, similarity, lam: of the SDC.
        theta: of the CDC.
        backend: of the SDC or CDC (see :mod:`sdnseg.nn.functional`); None: the default.
        norm_layer, act_layer: see the module docstring.

    Shape:
        u (N, C, H, W), v (N, Cf, H', W') -> (N, C, H, W); v is resized bilinearly to (H, W).
    """

    def __init__(
        self,
        channels: int,
        sdc_channels: int | None = None,
        operator: str = "sdc",
        kernel_size: int = 3,
        dilation: int = 1,
        similarity: Similarity = "perona_malik",
        theta: float = 0.7,
        lam: float = 1.0,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
        if sdc_channels is not None and not sdc_channels > 0:
            raise ValueError(f"sdc_channels must be positive or None, got {sdc_channels!r}")
        width = channels if sdc_channels is None else sdc_channels
        self.operator = operator
        self.reduce = (
            nn.Identity()
            if sdc_channels is None
            else conv_norm_act(channels, width, 1, norm_layer=norm_layer, act_layer=act_layer)
        )
        if operator in GUIDED:
            cls = SemanticDifferenceConv2d if operator == "sdc" else SemanticConv2d
            self.op = cls(
                width, width, kernel_size, dilation, similarity, lam, bias=False, backend=backend
            )
        elif operator == "cdc":
            self.op = CentralDifferenceConv2d(
                width, width, kernel_size, dilation, theta, bias=False, backend=backend
            )
        else:
            pad = (kernel_size // 2) * dilation
            self.op = nn.Conv2d(width, width, kernel_size, 1, pad, dilation, bias=False)
        self.op_norm = nn.Sequential(norm_layer(width), act_layer())
        self.fuse = conv_norm_act(
            channels + width, channels, 1, norm_layer=norm_layer, act_layer=act_layer
        )

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        x = self.reduce(u)
        y = self.op(x, v) if self.operator in GUIDED else self.op(x)
        y = self.op_norm(y)
        return self.fuse(torch.cat([u, y], dim=1))


def _per_stage(name: str, value, num_stages: int) -> list:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != num_stages:
            raise ValueError(f"{name} has {len(value)} entries for {num_stages} stages")
        return list(value)
    return [value] * num_stages


class SingleScaleSDN(nn.Module):
    """SDN neck for single-scale decoders (FCN, Segmenter), Sec. 4.3 and Fig. 4(a).

    The guidance is ``Φ(F_L)``: a 3×3 conv with stride 2 on the last feature (+ norm + act, our
    choice), ``guidance_channels`` wide (the paper does not give Φ's width; 2048→2048 would cost 38M
    parameters). Only the last feature is changed: ``F_L <- SDN(F_L, Φ(F_L))``.

    Shape:
        a list of features -> a list of the same shapes.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        guidance_channels: int = 256,
        sdc_channels: int | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        **sdn_kwargs,
    ) -> None:
        super().__init__()
        last = in_channels[-1]
        self.guidance = conv_norm_act(last, guidance_channels, 3, 2, norm_layer, act_layer)
        self.sdn = SDN(last, sdc_channels, norm_layer=norm_layer, act_layer=act_layer, **sdn_kwargs)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        last = features[-1]
        return [*features[:-1], self.sdn(last, self.guidance(last))]


class MultiScaleSDN(nn.Module):
    """SDN neck for multi-scale decoders (Semantic FPN), Sec. 4.3, Eq. 6 and Fig. 4(b).

    Stage i is guided by the raw backbone feature ``F_{i+1}`` (not by the SDN output of stage i+1),
    the last stage by ``Φ(F_L)``; one SDN per stage, weights not shared.

    Args:
        in_channels: channels of each stage.
        guidance_channels: width of Φ.
        sdc_channels: ``None`` (paper), an int (capped at each stage's width), or one per stage.

    Shape:
        a list of L features -> a list of the same shapes.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        guidance_channels: int = 256,
        sdc_channels: int | None | Sequence[int | None] = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        **sdn_kwargs,
    ) -> None:
        super().__init__()
        widths = _per_stage("sdc_channels", sdc_channels, len(in_channels))
        widths = [
            None if w is None or (not isinstance(sdc_channels, Sequence) and w >= c) else w
            for w, c in zip(widths, in_channels, strict=True)
        ]
        self.guidance = conv_norm_act(
            in_channels[-1], guidance_channels, 3, 2, norm_layer, act_layer
        )
        self.sdns = nn.ModuleList(
            SDN(c, w, norm_layer=norm_layer, act_layer=act_layer, **sdn_kwargs)
            for c, w in zip(in_channels, widths, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.sdns):
            raise ValueError(f"expected {len(self.sdns)} features, got {len(features)}")
        guides = [*features[1:], self.guidance(features[-1])]
        return [sdn(f, g) for sdn, f, g in zip(self.sdns, features, guides, strict=True)]


class ConcatSDN(nn.Module):
    """Single-scale SDN (Fig. 4a) on :func:`resize_concat` of all features.

    The features are brought to the finest one's size and concatenated, as a decoder that reads
    HRNet's branches this way does (mmseg's ``input_transform="resize_concat"``); that one map is
    then the ``F`` of ``F_sdn = SDN(F, Φ(F))``. The neck returns it alone, so the decoder's own
    concatenation of a one-feature list leaves it as it is.

    Args:
        in_channels: channels of each feature; the SDN is ``sum(in_channels)`` wide.
        guidance_channels, sdc_channels, norm_layer, act_layer, **sdn_kwargs: as
            :class:`SingleScaleSDN`.

    Shape:
        a list of features, the first (N, C_0, H, W) -> ``[(N, sum(in_channels), H, W)]``
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        guidance_channels: int = 256,
        sdc_channels: int | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        **sdn_kwargs,
    ) -> None:
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        self.sdn = SingleScaleSDN(
            [sum(self.in_channels)],
            guidance_channels,
            sdc_channels,
            norm_layer=norm_layer,
            act_layer=act_layer,
            **sdn_kwargs,
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if [f.shape[1] for f in features] != self.in_channels:
            raise ValueError(
                f"ConcatSDN expects features of {self.in_channels} channels, got "
                f"{[f.shape[1] for f in features]}"
            )
        return self.sdn([resize_concat(features)])


def resize_concat(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """The features resized bilinearly to the first one's size and concatenated over channels.

    mmseg's ``input_transform="resize_concat"`` (``align_corners=False``); one feature is
    returned as it is.

    Shape:
        [(N, C_i, H_i, W_i), ...] -> (N, sum C_i, H_0, W_0)
    """
    if not features:
        raise ValueError("resize_concat needs at least one feature, got none")
    if len(features) == 1:
        return features[0]
    first = features[0]
    return torch.cat([first, *(resize_like(f, first) for f in features[1:])], dim=1)


def resize_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to the spatial size of ``ref`` (no-op when equal)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)
