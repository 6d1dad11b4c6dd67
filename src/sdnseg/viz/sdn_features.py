"""What an SDN sees: the feature maps of each SDN stage of a segmentor (the paper's Figure 6).

* :func:`capture_sdn` runs a segmentor once with forward hooks on every :class:`~sdnseg.nn.SDN` of
  its neck and keeps, per stage, the input U, the guidance V, the difference operator's output Y
  (before its norm), the SDN output F_sdn and the similarities S that the SDC applied (Eq. 5).
* :func:`sdn_figure` draws them: one row per stage, features as their first three principal
  components in RGB (:func:`pca_rgb`), S as its mean and minimum over the kernel's neighbours
  (:func:`similarity_summary`).

The response of conv, CDC and SDC to one image (Figure 2) is :mod:`sdnseg.viz.operator_responses`.
Figures are written atomically by :func:`sdnseg.viz.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdnseg.models.padding import valid_size
from sdnseg.nn.functional import kernel_offsets
from sdnseg.nn.sdn import GUIDED, SDN, resize_like
from sdnseg.viz.figure import hide_ticks, save_figure

__all__ = [
    "capture_sdn",
    "magnitude",
    "pca_rgb",
    "sdn_figure",
    "sdn_modules",
    "segmentor_of",
    "similarity_summary",
]


# --- capture ----------------------------------------------------------------------------------


def segmentor_of(net: Any) -> nn.Module:
    """The segmentor behind a ``Predictor`` (its ``.net``), or ``net`` itself."""
    return net.net if isinstance(getattr(net, "net", None), nn.Module) else net


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
            neck (a ``Predictor`` is unwrapped to its ``.net``).
        images: normalised images (N, 3, H, W) on the model's device.

    Returns:
        One dict per SDN, in forward order, tensors detached, float32, on the CPU:

        * ``name`` (module path) and ``operator`` (``"sdc"``, ``"conv"``, ``"cdc"`` or ``"sc"``);
        * ``U`` (N, C, h, w): the SDN input; ``F_sdn`` (N, C, h, w): its output;
        * ``V`` (N, Cf, h', w'): the guidance as given; ``V_resized``: V resized bilinearly to
          U's size, what the SDC compares;
        * ``X``: the operator's input (U after the optional 1×1 reduction); ``Y``: the
          operator's output before ``op_norm``;
        * ``S`` (N, K, h, w): the similarity to each of the K = kh·kw − 1 neighbours, from the
          SDC's own :meth:`~sdnseg.nn.SemanticDifferenceConv2d.similarity_map` of the inputs it
          was given (``None`` unless the operator is ``"sdc"`` or ``"sc"``); ``lam`` (float or None),
          ``kernel_size``, ``dilation``;
        * ``valid_size``: the (h, w) top-left part of the maps that covers the image, without the
          padding the segmentor adds up to its ``size_divisor``
          (:func:`sdnseg.models.padding.valid_size`).

    Raises:
        ValueError: the model has no SDN neck.
    """
    net = segmentor_of(net)
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
            if record["operator"] in GUIDED:
                # The operator's own S for these inputs (its resize and λ), so S is what Y used.
                s = op.similarity_map(x, args[1])
                record.update(S=_cpu(s), lam=float(op.lam))

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
    image_size = tuple(images.shape[-2:])
    padded_size = padded[0] if padded else image_size
    for record in records:
        if "U" not in record:
            raise ValueError(f"{record['name']} did not run in the forward pass")
        record["valid_size"] = valid_size(record["U"].shape[-2:], image_size, padded_size)
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
    from matplotlib.figure import Figure

    columns = ("image", "U (SDN input)", "V (guidance)", "Y (after op)", "F_sdn (output)")
    columns += ("mean S", "min S")
    rows = len(stages)
    fig = Figure(figsize=(2.3 * 7, 2.5 * rows))
    axes = fig.subplots(rows, 7, squeeze=False)
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
            hide_ticks(ax)
    fig.suptitle("SDN stages: features as 3 principal components; S dark = semantic boundary")
    fig.tight_layout()
    return save_figure(fig, path)
