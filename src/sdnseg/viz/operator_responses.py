"""What the operators do to an image: vanilla conv, CDC and SDC with one kernel, compared at a
few points (in the spirit of the paper's Figure 2, Sec. 3.2).

* :func:`operator_responses` applies one kernel three ways with the :mod:`sdnseg.nn.functional`
  ops: ``F.conv2d``, :func:`~sdnseg.nn.functional.central_difference_conv2d` and
  :func:`~sdnseg.nn.functional.semantic_difference_conv2d` (Eq. 5) guided by class
  probabilities;
* :func:`operator_response_figure` draws the responses, the similarities S the SDC applied and the
  response at points picked like the paper's A1, A2, B (:func:`pick_points`).

Figures are written atomically by :func:`sdnseg.viz.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn.functional import (
    central_difference_conv2d,
    neighbour_similarity,
    semantic_difference_conv2d,
)
from sdnseg.nn.sdn import resize_like
from sdnseg.viz.figure import hide_ticks, save_figure
from sdnseg.viz.palette import colorize
from sdnseg.viz.sdn_features import segmentor_of, similarity_summary

__all__ = [
    "OPERATOR_NAMES",
    "OperatorResponses",
    "check_points",
    "default_lam",
    "operator_response_figure",
    "operator_responses",
    "pick_points",
    "seeded_kernel",
    "stem_kernel",
]

OPERATOR_NAMES = ("conv", "CDC", "SDC")
SIMILARITY = "perona_malik"  # the paper's g


@dataclass
class OperatorResponses:
    """What :func:`operator_response_figure` drew.

    Attributes:
        path: the PNG.
        names: a name per point (``A1``, ``A2``, ``B`` for three points, else ``P1``…).
        points: (y, x) image coordinates.
        labels: the predicted class at each point.
        values: operator -> mean |response| over output channels at each point.
        relative: the same divided by that operator's 99th percentile over the image.
    """

    path: Path
    names: list[str]
    points: list[tuple[int, int]]
    labels: list[int]
    values: dict[str, list[float]]
    relative: dict[str, list[float]]


def stem_kernel(net: nn.Module) -> torch.Tensor | None:
    """The weights of the backbone's first RGB convolution, when it has an odd kernel.

    That is the model's own first-layer filter bank, a natural "same kernel" for comparing
    operators on the image. ``None`` for a stem the operators cannot take (e.g. a ViT's 16×16
    patch embedding).
    """
    net = segmentor_of(net)
    for module in getattr(net, "backbone", net).modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3 and module.groups == 1:
            kh, kw = module.kernel_size
            return module.weight.detach().float().cpu() if kh % 2 and kw % 2 else None
    return None


def seeded_kernel(out_channels: int = 8, kernel_size: int = 3, seed: int = 0) -> torch.Tensor:
    """A fixed random kernel (out_channels, 3, k, k), scaled like a unit-variance filter."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(out_channels, 3, kernel_size, kernel_size, generator=g)
    return weight / math.sqrt(3 * kernel_size * kernel_size)


def default_lam(num_classes: int) -> float:
    """λ for class-probability guidance: 1/20 of the distance of a full class change.

    ``d2`` is the channel mean of squared differences, so two one-hot vectors of different classes
    are ``d2 = 2 / C`` apart; with this λ the Perona–Malik similarity across a crisp change is
    ``1 / sqrt(1 + 400) ≈ 0.05``, while probability wobbles inside a region keep it near 1.
    """
    return 0.05 * math.sqrt(2.0 / max(num_classes, 1))


def operator_responses(
    x: torch.Tensor,
    guidance: torch.Tensor,
    weight: torch.Tensor,
    theta: float = 0.7,
    lam: float | None = None,
) -> dict[str, torch.Tensor]:
    """Vanilla conv, CDC(θ) and SDC(guidance, λ) of ``x`` with the same kernel ``weight``.

    Stride 1, same-size output, no bias. The SDC uses the paper's Perona–Malik similarity.

    Shape:
        x (N, Ci, H, W), guidance (N, Cf, H', W') resized bilinearly to (H, W),
        weight (Co, Ci, kh, kw) -> {"conv", "CDC", "SDC"}: (N, Co, H, W)
    """
    return _responses(x, guidance, weight, theta, lam)[0]


@torch.no_grad()
def _responses(
    x: torch.Tensor,
    guidance: torch.Tensor,
    weight: torch.Tensor,
    theta: float,
    lam: float | None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`operator_responses` and the similarities S (N, K, H, W) that its SDC applied."""
    weight = weight.to(x)
    guidance = resize_like(guidance.to(x), x)
    kh, kw = weight.shape[-2:]
    lam = default_lam(guidance.shape[1]) if lam is None else lam
    responses = {
        "conv": F.conv2d(x, weight, padding=(kh // 2, kw // 2)),
        "CDC": central_difference_conv2d(x, weight, theta=theta),
        "SDC": semantic_difference_conv2d(x, guidance, weight, similarity=SIMILARITY, lam=lam),
    }
    # The S inside that SDC: the same op's similarity with the same guidance, kernel and λ.
    s = neighbour_similarity(guidance, (kh, kw), similarity=SIMILARITY, lam=lam)
    return responses, s


def _gradient(image_rgb: np.ndarray) -> torch.Tensor:
    grey = torch.as_tensor(np.asarray(image_rgb, dtype=np.float32)).mean(-1)[None, None] / 255
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel[None, None])[0, 0]
    gy = F.conv2d(padded, sobel.T[None, None])[0, 0]
    return torch.stack([gy, gx])


def check_points(points: Sequence[tuple[int, int]], size: tuple[int, int]) -> None:
    """``ValueError`` unless every (y, x) lies inside an image of ``size`` (H, W)."""
    h, w = size
    if not points:
        raise ValueError("no points given")
    for y, x in points:
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"point (y={y}, x={x}) is outside the {h}×{w} image")


def pick_points(
    image_rgb: np.ndarray, labels: torch.Tensor | np.ndarray, margin: int = 3
) -> list[tuple[int, int]]:
    """Three points like the paper's A1, A2, B: two in one predicted region, one in another.

    A1 and A2 straddle the strongest image edge found inside a predicted region (at least
    ``margin`` pixels from any predicted boundary and from the image border), ``margin`` pixels
    either side along the gradient: a texture edge that is not a semantic boundary. Without such
    an edge (none at least a quarter as strong as the image's strongest), they are two interior
    points of the largest region. B is the interior pixel of another class nearest to them (the
    farthest interior pixel of the same class when only one class is predicted).
    """
    labels = torch.as_tensor(np.asarray(labels)).long()
    h, w = labels.shape
    grad = _gradient(image_rgb)
    strength = grad.norm(dim=0)
    lab = labels[None, None].double()
    size = 2 * margin + 1
    hi = F.max_pool2d(lab, size, 1, margin)[0, 0]
    lo = -F.max_pool2d(-lab, size, 1, margin)[0, 0]
    interior = hi == lo
    border = torch.zeros_like(interior)
    border[margin : h - margin, margin : w - margin] = True
    interior &= border
    if not interior.any():  # tiny image or fragmented prediction: take any pixel
        interior = torch.ones_like(interior)
    inner = torch.where(interior, strength, torch.zeros_like(strength))
    flat = int(inner.argmax())
    ey, ex = divmod(flat, w)
    if float(inner.max()) > 0 and float(inner.max()) >= 0.25 * float(strength.max()):
        gy, gx = (grad[:, ey, ex] / strength[ey, ex]).tolist()
        dy, dx = round(margin * gy), round(margin * gx)
        a1 = (min(max(ey - dy, 0), h - 1), min(max(ex - dx, 0), w - 1))
        a2 = (min(max(ey + dy, 0), h - 1), min(max(ex + dx, 0), w - 1))
    else:
        region = torch.bincount(labels[interior], minlength=1).argmax()
        ys, xs = torch.nonzero(interior & (labels == region), as_tuple=True)
        n = len(ys)
        a1, a2 = (int(ys[n // 3]), int(xs[n // 3])), (int(ys[2 * n // 3]), int(xs[2 * n // 3]))
    cls = labels[a1]
    others = interior & (labels != cls)
    if not others.any():  # no interior pixel of another class: any pixel of one
        others = labels != cls
    mid_y, mid_x = (a1[0] + a2[0]) / 2, (a1[1] + a2[1]) / 2
    if others.any():
        ys, xs = torch.nonzero(others, as_tuple=True)
        pick = int(((ys - mid_y) ** 2 + (xs - mid_x) ** 2).argmin())
    else:  # one class predicted: the farthest interior pixel stands in for B
        ys, xs = torch.nonzero(interior, as_tuple=True)
        pick = int(((ys - mid_y) ** 2 + (xs - mid_x) ** 2).argmax())
    return [a1, a2, (int(ys[pick]), int(xs[pick]))]


def _path_samples(
    points: Sequence[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Pixels along the polyline through ``points``, their distance along it, and the points'."""
    ys, xs, dist, marks = [], [], [], [0.0]
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:], strict=True):
        length = math.hypot(y1 - y0, x1 - x0)
        steps = max(abs(y1 - y0), abs(x1 - x0), 1)
        t = np.arange(steps) / steps  # the segment's end is the next one's start
        ys.extend(np.rint(y0 + t * (y1 - y0)).astype(int))
        xs.extend(np.rint(x0 + t * (x1 - x0)).astype(int))
        dist.extend(marks[-1] + t * length)
        marks.append(marks[-1] + length)
    ys.append(points[-1][0])
    xs.append(points[-1][1])
    dist.append(marks[-1])
    return np.asarray(ys), np.asarray(xs), np.asarray(dist), marks


def operator_response_figure(
    path: str | Path,
    image_rgb: np.ndarray,
    points: Sequence[tuple[int, int]] | None = None,
    *,
    guidance: torch.Tensor,
    kernel: torch.Tensor | None = None,
    mean: Sequence[float] = (123.675, 116.28, 103.53),
    std: Sequence[float] = (58.395, 57.12, 57.375),
    theta: float = 0.7,
    lam: float | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> OperatorResponses:
    """Vanilla conv, CDC and SDC applied with one kernel to the image, compared at a few points.

    In the spirit of the paper's Figure 2: the normalised image goes through
    :func:`operator_responses`; each panel shows the response magnitude (mean |y| over output
    channels) divided by its own 99th percentile, so the three operators share a scale; the SDC is
    guided by the model's class probabilities (``guidance``), so its difference terms are damped
    where the guidance changes, i.e. across predicted boundaries, and are those of a pixel
    difference convolution (CDC with θ = 1) where the guidance is flat. The last column shows the
    relative response at the points and along the path through them (A1 → A2 crosses the
    intra-region edge, A2 → B a predicted boundary). This is an illustration of the operators with
    this model's guidance, not of a trained layer.

    Args:
        image_rgb: (H, W, 3) uint8.
        points: (y, x) pixels; ``None`` picks three with :func:`pick_points`.
        guidance: (C, H', W') or (1, C, H', W') class probabilities (resized to the image).
        kernel: (Co, 3, kh, kw) with odd kh, kw; ``None`` uses a fixed seeded random kernel.
        mean, std: the normalisation the kernel expects (0..255 scale).
        theta: of the CDC (the paper's 0.7).
        lam: of the SDC's similarity; ``None``: :func:`default_lam`.
        palette: class colours for the prediction panel.
    """
    from matplotlib.figure import Figure

    image_rgb = np.asarray(image_rgb)
    h, w = image_rgb.shape[:2]
    guidance = guidance if guidance.dim() == 4 else guidance[None]
    guidance = resize_like(guidance.detach().float().cpu(), torch.empty(1, 1, h, w))
    labels = guidance[0].argmax(0)
    points = pick_points(image_rgb, labels) if points is None else [tuple(p) for p in points]
    check_points(points, (h, w))
    names = ["A1", "A2", "B"] if len(points) == 3 else [f"P{i + 1}" for i in range(len(points))]
    weight = seeded_kernel() if kernel is None else kernel.detach().float().cpu()
    image = torch.tensor(image_rgb, dtype=torch.float32).permute(2, 0, 1)[None]
    x = (image - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    lam = default_lam(guidance.shape[1]) if lam is None else lam
    responses, s = _responses(x, guidance, weight, theta, lam)
    maps = {name: y[0].abs().mean(0) for name, y in responses.items()}
    scales = {
        name: max(float(torch.quantile(m.flatten(), 0.99)), 1e-12) for name, m in maps.items()
    }
    values = {name: [float(m[p]) for p in points] for name, m in maps.items()}
    relative = {name: [v / scales[name] for v in values[name]] for name, v in values.items()}

    fig = Figure(figsize=(16, 7.5))
    axes = fig.subplots(2, 4)
    prediction = labels.numpy() if palette is None else colorize(labels, palette)
    mean_s, _ = similarity_summary(s[0], tuple(weight.shape[-2:]))
    k = f"{weight.shape[-2]}×{weight.shape[-1]}"
    top = [
        ("image", image_rgb, {}),
        ("predicted classes (SDC guidance)", prediction, {"interpolation": "nearest"}),
        (
            f"mean similarity S (λ={lam:.3g}), dark = boundary\n"
            f"[{mean_s.min():.2f}, {mean_s.max():.2f}]",
            mean_s,
            {"cmap": "gray"},
        ),
    ]
    bottom = [
        (f"|vanilla conv| ({k})", maps["conv"] / scales["conv"], {}),
        (f"|CDC| (θ={theta})", maps["CDC"] / scales["CDC"], {}),
        ("|SDC| (guided by the prediction)", maps["SDC"] / scales["SDC"], {}),
    ]
    for ax, (title, panel, style) in zip(axes[0, :3], top, strict=True):
        ax.imshow(panel, **({"vmin": 0.0, "vmax": 1.0} if "cmap" in style else {}), **style)
        ax.set_title(title, fontsize=9)
    for ax, (title, panel, style) in zip(axes[1, :3], bottom, strict=True):
        ax.imshow(panel.numpy(), cmap="inferno", vmin=0.0, vmax=1.0, **style)
        ax.set_title(f"{title} / its p99", fontsize=9)
    for ax in [*axes[0, :3], *axes[1, :3]]:
        hide_ticks(ax)
        for name, (py, px) in zip(names, points, strict=True):
            ax.plot(px, py, "o", ms=5, mfc="none", mec="cyan", mew=1.5)
            ax.annotate(name, (px, py), (4, -4), textcoords="offset points", color="cyan", size=8)
    # Bars: relative response of each operator at each point.
    bars = axes[0, 3]
    width = 0.8 / len(OPERATOR_NAMES)
    for i, op in enumerate(OPERATOR_NAMES):
        bars.bar(np.arange(len(points)) + (i - 1) * width, relative[op], width, label=op)
    point_labels = [f"{n}\nclass {int(labels[p])}" for n, p in zip(names, points, strict=True)]
    bars.set_xticks(np.arange(len(points)), point_labels, fontsize=8)
    bars.set_title("response at the points / operator's p99", fontsize=9)
    bars.legend(fontsize=8)
    # Profile along the path through the points.
    ys, xs, dist, marks = _path_samples(points)
    profile = axes[1, 3]
    for op in OPERATOR_NAMES:
        profile.plot(dist, (maps[op][ys, xs] / scales[op]).numpy(), label=op)
    for name, mark in zip(names, marks, strict=True):
        profile.axvline(mark, color="grey", lw=0.5)
        profile.text(mark, profile.get_ylim()[1], name, fontsize=8, va="top")
    profile.set_xlabel("pixels along " + " → ".join(names), fontsize=8)
    profile.set_title("response along the path / operator's p99", fontsize=9)
    profile.legend(fontsize=8)
    fig.suptitle("One kernel, three operators (cf. the paper's Fig. 2)")
    fig.tight_layout()
    path = save_figure(fig, path)
    return OperatorResponses(
        path, names, list(points), [int(labels[p]) for p in points], values, relative
    )
