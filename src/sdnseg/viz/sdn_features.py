"""What an SDN sees and does: feature maps of each SDN stage (the paper's Figure 6) and the response
of vanilla conv, CDC and SDC to one image (the spirit of its Figure 2, Sec. 3.2).

* :func:`capture_sdn` runs a segmentor once with forward hooks on every :class:`~sdnseg.nn.SDN` of
  its neck and keeps, per stage, the input U, the guidance V, the difference operator's output Y
  (before its norm), the SDN output F_sdn and the similarities S that the SDC applied.
* :func:`sdn_figure` draws them: one row per stage, features as their first three principal
  components in RGB (:func:`pca_rgb`), S as its mean and minimum over the kernel's neighbours.
* :func:`operator_response_figure` applies one kernel three ways to the image (vanilla conv, CDC and
  an SDC guided by the model's class probabilities) and compares the responses at a few points.

Figures are written atomically by :func:`sdnseg.viz.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.nn.functional import (
    central_difference_conv2d,
    kernel_offsets,
    neighbour_similarity,
    semantic_difference_conv2d,
)
from sdnseg.nn.sdn import SDN, resize_like
from sdnseg.viz import save_figure

__all__ = [
    "OPERATOR_NAMES",
    "OperatorResponses",
    "capture_sdn",
    "check_points",
    "default_lam",
    "magnitude",
    "operator_response_figure",
    "operator_responses",
    "pca_rgb",
    "pick_points",
    "sdn_figure",
    "sdn_modules",
    "seeded_kernel",
    "similarity_summary",
    "stem_kernel",
]

OPERATOR_NAMES = ("conv", "CDC", "SDC")


# --- capture ----------------------------------------------------------------------------------


def sdn_modules(net: nn.Module) -> list[tuple[str, SDN]]:
    """The ``(name, module)`` of every SDN in ``net.neck``, in forward order.

    Raises:
        ValueError: ``net`` has no neck, or a neck without SDN modules (a baseline model).
    """
    neck = getattr(net, "neck", None)
    found = [] if neck is None else [(f"neck.{n}", m) for n, m in neck.named_modules()]
    found = [(name, m) for name, m in found if isinstance(m, SDN)]
    if not found:
        name = getattr(getattr(net, "config", None), "name", type(net).__name__)
        raise ValueError(
            f"the model {name!r} has no SDN neck, so there is nothing to visualise; "
            "use a *_sdn model (e.g. fcn_r18d8_sdn)"
        )
    return found


def _cpu(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().cpu()


@torch.no_grad()
def capture_sdn(net: nn.Module, images: torch.Tensor) -> list[dict[str, Any]]:
    """Run ``net`` once (eval mode, no grad) and record every SDN stage of its neck.

    Args:
        net: a :class:`~sdnseg.models.Segmentor` with a ``SingleScaleSDN`` or ``MultiScaleSDN``
            neck (a :class:`~sdnseg.engine.Predictor` is unwrapped to its ``.net``).
        images: normalised images (N, 3, H, W) on the model's device.

    Returns:
        One dict per SDN, in forward order, tensors detached, float32, on the CPU:

        * ``name`` (module path) and ``operator`` (``"sdc"``, ``"conv"`` or ``"cdc"``);
        * ``U`` (N, C, h, w): the SDN input; ``F_sdn`` (N, C, h, w): its output;
        * ``V`` (N, Cf, h', w'): the guidance as given; ``V_resized``: V resized bilinearly to
          U's size, what the SDC compares;
        * ``X``: the operator's input (U after the optional 1×1 reduction); ``Y``: the
          operator's output before ``op_norm``;
        * ``S`` (N, K, h, w): the similarity to each of the K = kh·kw − 1 neighbours, recomputed
          from V with the SDC's ``lam``, kernel and dilation (``None`` unless the operator is
          ``"sdc"``); ``lam`` (float or None), ``kernel_size``, ``dilation``;
        * ``valid_size``: the (h, w) top-left part of the maps that covers the image, without the
          padding the segmentor adds up to its ``size_divisor``.

    Raises:
        ValueError: the model has no SDN neck.
    """
    net = net.net if isinstance(getattr(net, "net", None), nn.Module) else net
    modules = sdn_modules(net)
    records: list[dict[str, Any]] = [{"name": name, "operator": m.operator} for name, m in modules]
    padded: list[tuple[int, int]] = []
    handles = []

    def on_sdn(record: dict[str, Any]):
        def hook(module: SDN, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            u = args[0] if args else kwargs["u"]
            v = args[1] if len(args) > 1 else kwargs["v"]
            record.update(
                U=_cpu(u), V=_cpu(v), V_resized=_cpu(resize_like(v, u)), F_sdn=_cpu(output)
            )

        return hook

    def on_op(record: dict[str, Any]):
        def hook(op: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            record.update(X=_cpu(x), Y=_cpu(output), S=None, lam=None)
            # nn.Conv2d (the "conv" and "cdc" operators) keeps dilation as a pair, the SDC an int.
            dilation = op.dilation[0] if isinstance(op.dilation, tuple) else op.dilation
            record.update(kernel_size=tuple(op.kernel_size), dilation=int(dilation))
            if record["operator"] == "sdc":
                # The same resize and lam as SemanticDifferenceConv2d.forward, so S is what Y used.
                v = resize_like(args[1], x)
                lam = op.lam.to(x.dtype)
                s = neighbour_similarity(v, op.kernel_size, op.dilation, op.similarity, lam)
                record.update(S=_cpu(s), lam=float(lam))

        return hook

    def on_backbone(module: nn.Module, args: tuple) -> None:
        padded.append(tuple(args[0].shape[-2:]))

    was_training = net.training
    try:
        for (_, module), record in zip(modules, records, strict=True):
            handles.append(module.register_forward_hook(on_sdn(record), with_kwargs=True))
            handles.append(module.op.register_forward_hook(on_op(record)))
        if isinstance(getattr(net, "backbone", None), nn.Module):
            handles.append(net.backbone.register_forward_pre_hook(on_backbone))
        net.eval()
        net(images)
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    height, width = images.shape[-2:]
    pad_h, pad_w = padded[0] if padded else (height, width)
    for record in records:
        if "U" not in record:
            raise ValueError(f"{record['name']} did not run in the forward pass")
        h, w = record["U"].shape[-2:]
        # Padding is added bottom/right, so the image covers the top-left fraction of every map.
        record["valid_size"] = (
            min(h, math.ceil(h * height / pad_h)),
            min(w, math.ceil(w * width / pad_w)),
        )
    return records


# --- reductions for display --------------------------------------------------------------------


def _chw(features: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(features).detach().cpu()
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one feature map (1, C, H, W), got {tuple(x.shape)}")
        x = x[0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"expected features (C, H, W) or (1, C, H, W), got {tuple(x.shape)}")
    return x.double()


def pca_rgb(features: torch.Tensor | np.ndarray, max_fit_pixels: int = 16384) -> np.ndarray:
    """The first three principal components of a feature map's channels, as an RGB image.

    Pixels are the samples and channels the variables; the components come from the eigenvectors
    of the channel covariance (exact and deterministic), fitted on at most ``max_fit_pixels``
    evenly strided pixels, then every pixel is projected. Each component's sign is fixed so that
    its largest loading is positive, and it is scaled to [0, 1] between its 1st and 99th
    percentiles (a few extreme pixels would otherwise wash out the rest). A component without
    spread, or missing because there are fewer than three channels, is 0.

    Shape:
        (C, H, W) or (1, C, H, W) -> (H, W, 3) float32 in [0, 1]
    """
    x = _chw(features)
    c, h, w = x.shape
    pixels = x.reshape(c, h * w).T
    fit = pixels[:: max(1, math.ceil(h * w / max_fit_pixels))]
    mean = fit.mean(0)
    centred = fit - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    components = vectors[:, -3:].flip(-1)  # eigh sorts ascending
    signs = components.gather(0, components.abs().argmax(0, keepdim=True)).sign()
    components = components * torch.where(signs == 0, 1.0, signs)
    scores = (pixels - mean) @ components
    out = torch.zeros(h * w, 3, dtype=torch.float64)
    for k in range(scores.shape[1]):
        lo, hi = torch.quantile(scores[:, k], torch.tensor([0.01, 0.99], dtype=torch.float64))
        if hi - lo > 1e-12 * max(1.0, float(scores[:, k].abs().max())):
            out[:, k] = ((scores[:, k] - lo) / (hi - lo)).clamp(0, 1)
    return out.reshape(h, w, 3).float().numpy()


def magnitude(features: torch.Tensor | np.ndarray) -> np.ndarray:
    """Mean absolute value over channels, divided by its maximum (all zeros stay zeros).

    Shape:
        (C, H, W) or (1, C, H, W) -> (H, W) float32 in [0, 1]
    """
    m = _chw(features).abs().mean(0)
    peak = float(m.max())
    return (m / peak if peak > 0 else m).float().numpy()


def similarity_summary(
    s: torch.Tensor, kernel_size: tuple[int, int], dilation: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and minimum of the similarities S over each pixel's in-image neighbours.

    Neighbours outside the image are left out: the SDC ignores them (their S is meaningless).
    Low values mark where the guidance changes, i.e. a semantic boundary.

    Shape:
        (K, H, W) or (1, K, H, W) -> two (H, W) float32 arrays
    """
    s = _chw(s)
    k, h, w = s.shape
    offsets = kernel_offsets(tuple(kernel_size), dilation)
    if len(offsets) != k:
        raise ValueError(f"S has {k} maps but a {kernel_size} kernel has {len(offsets)} neighbours")
    ys, xs = torch.arange(h)[:, None], torch.arange(w)[None, :]
    valid = torch.stack(
        [(ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w) for dy, dx in offsets]
    )
    count = valid.sum(0).clamp(min=1)
    mean = (s * valid).sum(0) / count
    low = torch.where(valid, s, torch.ones_like(s)).min(0).values
    return mean.float().numpy(), low.float().numpy()


# --- figures ------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sdn_figure(path: str | Path, image_rgb: np.ndarray, stages: Sequence[dict[str, Any]]) -> Path:
    """One row per SDN stage: image, U, V, Y, F_sdn (each as :func:`pca_rgb`), mean and min S.

    Maps are cropped to the part that covers the image (``valid_size``) and drawn with nearest
    interpolation, so their true resolution shows. The similarity panels are stretched from black
    at their minimum to white at their maximum (both stated in the title; a constant map is drawn
    on [0, 1]): dark is low similarity, i.e. where the guidance says a semantic boundary lies.
    Stages whose operator is not an SDC have no S and show "no S".

    Args:
        image_rgb: (H, W, 3) uint8, the image the stages were computed from.
        stages: what :func:`capture_sdn` returned (the first image of the batch is drawn).
    """
    plt = _pyplot()
    columns = ("image", "U (SDN input)", "V (guidance)", "Y (after op)", "F_sdn (output)")
    columns += ("mean S", "min S")
    rows = len(stages)
    fig, axes = plt.subplots(rows, 7, figsize=(2.3 * 7, 2.5 * rows), squeeze=False)
    for row, stage in enumerate(stages):
        vh, vw = stage["valid_size"]
        crop = (slice(None), slice(0, vh), slice(0, vw))
        panels: list[tuple[str, np.ndarray | None, dict]] = [("image", image_rgb, {})]
        for key, title in zip(("U", "V_resized", "Y", "F_sdn"), columns[1:5], strict=True):
            feature = stage[key][0][crop]
            label = f"{title}\n{feature.shape[0]}×{vh}×{vw}"
            panels.append((label, pca_rgb(feature), {"interpolation": "nearest"}))
        if stage.get("S") is not None:
            mean, low = similarity_summary(stage["S"][0], stage["kernel_size"], stage["dilation"])
            for title, value in (("mean S", mean), ("min S", low)):
                value = value[:vh, :vw]
                # Stretched from the map's minimum (black) to its maximum (white): a learned λ
                # often leaves S within a few percent of 1, blank on a fixed [0, 1] scale.
                lo, hi = float(value.min()), float(value.max())
                lo, hi = (lo, hi) if hi - lo > 1e-4 else (0.0, 1.0)
                style = {"cmap": "gray", "vmin": lo, "vmax": hi, "interpolation": "nearest"}
                label = f"{title} (λ={stage['lam']:.3g})\nblack {lo:.2f} … white {hi:.2f}"
                panels.append((label, value, style))
        else:
            panels += [(f"no S (operator={stage['operator']})", None, {})] * 2
        for col, (ax, (title, panel, style)) in enumerate(zip(axes[row], panels, strict=True)):
            if panel is not None:
                ax.imshow(panel, **style)
            ax.set_title(f"{stage['name']}\n{title}" if col == 0 else title, fontsize=7)
            ax.set_xticks([])  # a frame, so a uniform white map still shows
            ax.set_yticks([])
    fig.suptitle("SDN stages: features as 3 principal components; S dark = semantic boundary")
    fig.tight_layout()
    return save_figure(fig, path)


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
    net = net.net if isinstance(getattr(net, "net", None), nn.Module) else net
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


@torch.no_grad()
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
    weight = weight.to(x)
    guidance = resize_like(guidance.to(x), x)
    kh, kw = weight.shape[-2:]
    lam = default_lam(guidance.shape[1]) if lam is None else lam
    return {
        "conv": F.conv2d(x, weight, padding=(kh // 2, kw // 2)),
        "CDC": central_difference_conv2d(x, weight, theta=theta),
        "SDC": semantic_difference_conv2d(x, guidance, weight, lam=lam),
    }


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
    plt = _pyplot()
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
    responses = operator_responses(x, guidance, weight, theta, lam)
    maps = {name: y[0].abs().mean(0) for name, y in responses.items()}
    scales = {
        name: max(float(torch.quantile(m.flatten(), 0.99)), 1e-12) for name, m in maps.items()
    }
    values = {name: [float(m[p]) for p in points] for name, m in maps.items()}
    relative = {name: [v / scales[name] for v in values[name]] for name, v in values.items()}

    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    if palette is not None:
        from sdnseg.engine.predictor import colorize

        prediction = colorize(labels, palette)
    else:
        prediction = labels.numpy()
    s = neighbour_similarity(resize_like(guidance, x), tuple(weight.shape[-2:]), lam=lam)
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
        ax.set_xticks([])
        ax.set_yticks([])
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
