"""SegFix refinement of any model's prediction (Yuan et al., ECCV 2020).

SegFix replaces the label of every pixel it calls boundary by the label of a pixel inside the
same segment: ``refined[p] = labels[p + offset(p)]``, with ``offset(p) = distance · DIRECTIONS[k]``
for ``k`` the arg-max of the direction logits, where the boundary probability exceeds
``threshold`` (openseg.pytorch: 0.5), and 0 elsewhere. ``distance`` is in pixels of the maps'
resolution (openseg's ``scripts/cityscapes/segfix.py --scale 2``: 2). For label maps of another
size the maps are resized bilinearly to it and the offsets scaled per axis by the size ratio, then
rounded to whole pixels; lookups past the image edge take the edge pixel.

The functions work on plain tensors, so the output of any library can be refined:

>>> refined = refine_with_offsets(labels, boundary_prob, direction_logits)

and :func:`load_segfix` turns a checkpoint of ``sdnseg fit --model.arch segfix_r18`` (or
``segfix_efflite2``) into a :class:`SegFixRefiner`, which runs the network on the images (with
its own normalisation and test size) and refines label maps or class probabilities of any size;
``--postprocess segfix --segfix_checkpoint PATH`` of ``sdnseg validate|test|predict`` uses it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision import tv_tensors

from sdnseg.data.segfix_targets import DIRECTIONS, NUM_DIRECTIONS
from sdnseg.data.transforms import eval_transforms
from sdnseg.inference.checkpoint import CheckpointRecord, checkpoint_weights, read_checkpoint
from sdnseg.models import ModelConfig, SegFixNet, build_model, list_models

__all__ = [
    "DISTANCE",
    "THRESHOLD",
    "SegFixRefiner",
    "direction_offsets",
    "load_segfix",
    "read_segfix_record",
    "refine_with_offsets",
    "segfix_offsets",
    "shift_by_offsets",
]

THRESHOLD = 0.5  # openseg's boundary threshold
DISTANCE = 2.0  # openseg's offset scale, in pixels of the maps' resolution


def _pair(distance: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(distance, (int, float)):
        return float(distance), float(distance)
    return float(distance[0]), float(distance[1])


def direction_offsets(
    direction: torch.Tensor, boundary: torch.Tensor, distance: float | Sequence[float] = DISTANCE
) -> torch.Tensor:
    """Whole-pixel offsets ``round(distance · DIRECTIONS[direction])`` where ``boundary``, else 0.

    Args:
        direction: direction classes 0–7 (:data:`~sdnseg.data.segfix_targets.DIRECTIONS`); other
            values only where ``boundary`` is false.
        boundary: where to move.
        distance: the offset length in pixels, or (along rows, along columns).

    Shape:
        direction, boundary (N, H, W) -> (N, 2, H, W) int64 (dh, dw)
    """
    if direction.shape != boundary.shape or direction.dim() != 3:
        raise ValueError(
            f"direction {tuple(direction.shape)} and boundary {tuple(boundary.shape)} must be the "
            "same (N, H, W)"
        )
    moving = boundary.bool()
    if moving.any() and not ((direction[moving] >= 0) & (direction[moving] < NUM_DIRECTIONS)).all():
        raise ValueError(f"direction classes must be 0..{NUM_DIRECTIONS - 1} on boundary pixels")
    scale = torch.tensor(_pair(distance), dtype=torch.float64, device=direction.device)
    vectors = torch.as_tensor(DIRECTIONS, device=direction.device).double() * scale
    offsets = vectors.round().long()[torch.where(moving, direction.long(), 0)]  # (N, H, W, 2)
    return (offsets * moving[..., None]).permute(0, 3, 1, 2)


def segfix_offsets(
    boundary_prob: torch.Tensor,
    direction_logits: torch.Tensor,
    size: Sequence[int] | None = None,
    threshold: float = THRESHOLD,
    distance: float = DISTANCE,
) -> torch.Tensor:
    """Offsets at ``size`` from SegFix's maps (see the module doc).

    Args:
        boundary_prob: boundary probabilities (N, 1, h, w) or (N, h, w).
        direction_logits: direction logits (or probabilities) (N, 8, h, w).
        size: (H, W) of the label maps to refine; None: the maps' own.
        threshold: boundary probability above which a pixel moves.
        distance: offset length in pixels at the maps' resolution, scaled to ``size``.

    Shape:
        -> (N, 2, H, W) int64 (dh, dw)
    """
    if boundary_prob.dim() == 3:
        boundary_prob = boundary_prob[:, None]
    if boundary_prob.dim() != 4 or boundary_prob.shape[1] != 1:
        raise ValueError(
            f"boundary_prob must be (N, 1, h, w) or (N, h, w), got {tuple(boundary_prob.shape)}"
        )
    if direction_logits.dim() != 4 or direction_logits.shape[1] != NUM_DIRECTIONS:
        raise ValueError(
            f"direction_logits must be (N, {NUM_DIRECTIONS}, h, w), got "
            f"{tuple(direction_logits.shape)}"
        )
    height, width = boundary_prob.shape[-2:]
    if direction_logits.shape[-2:] != boundary_prob.shape[-2:]:
        raise ValueError(
            f"boundary_prob {tuple(boundary_prob.shape)} and direction_logits "
            f"{tuple(direction_logits.shape)} differ in size"
        )
    size = (height, width) if size is None else (int(size[0]), int(size[1]))
    if size != (height, width):
        boundary_prob = F.interpolate(
            boundary_prob.float(), size=size, mode="bilinear", align_corners=False
        )
        direction_logits = F.interpolate(
            direction_logits.float(), size=size, mode="bilinear", align_corners=False
        )
    scale = (distance * size[0] / height, distance * size[1] / width)
    return direction_offsets(direction_logits.argmax(dim=1), boundary_prob[:, 0] > threshold, scale)


def shift_by_offsets(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``x`` read at ``p + offsets[p]``, clamped to the image: labels or per-class maps.

    Shape:
        x (N, H, W) or (N, C, H, W), offsets (N, 2, H, W) -> like x
    """
    if x.dim() not in (3, 4) or offsets.dim() != 4 or offsets.shape[1] != 2:
        raise ValueError(
            f"expected x (N, H, W) or (N, C, H, W) and offsets (N, 2, H, W), got "
            f"{tuple(x.shape)} and {tuple(offsets.shape)}"
        )
    if x.shape[0] != offsets.shape[0] or x.shape[-2:] != offsets.shape[-2:]:
        raise ValueError(
            f"x {tuple(x.shape)} and offsets {tuple(offsets.shape)} differ in N, H or W"
        )
    n, height, width = offsets.shape[0], offsets.shape[2], offsets.shape[3]
    rows = torch.arange(height, device=offsets.device).view(1, height, 1)
    cols = torch.arange(width, device=offsets.device).view(1, 1, width)
    source_h = (rows + offsets[:, 0]).clamp(0, height - 1)
    source_w = (cols + offsets[:, 1]).clamp(0, width - 1)
    index = (source_h * width + source_w).view(n, 1, height * width)
    flat = x.reshape(n, -1, height * width) if x.dim() == 4 else x.reshape(n, 1, height * width)
    shifted = flat.gather(2, index.expand(-1, flat.shape[1], -1).to(x.device))
    return shifted.view(x.shape)


def refine_with_offsets(
    labels: torch.Tensor,
    boundary_prob: torch.Tensor,
    direction_logits: torch.Tensor,
    threshold: float = THRESHOLD,
    distance: float = DISTANCE,
) -> torch.Tensor:
    """Refine label maps (or class probabilities) of any model with SegFix's maps.

    Args:
        labels: label maps (N, H, W) or per-class maps (N, C, H, W), of any size.
        boundary_prob, direction_logits, threshold, distance: see :func:`segfix_offsets`.

    Returns:
        ``labels`` with every boundary pixel's value taken from where its offset points.
    """
    offsets = segfix_offsets(
        boundary_prob, direction_logits, labels.shape[-2:], threshold, distance
    )
    return shift_by_offsets(labels, offsets.to(labels.device))


class SegFixRefiner:
    """A trained SegFix network with the normalisation and test size it was trained with.

    ``refiner(images, x)`` refines ``x`` (labels (N, H, W) or probabilities (N, C, H, W), any
    size) of the images ``images`` (uint8 RGB (N, 3, H', W')). Not an ``nn.Module``: a training
    module holding one does not save it in its checkpoints.

    Args:
        net: a :class:`~sdnseg.models.SegFixNet` (put in eval mode here).
        mean, std: its input normalisation on 0..255.
        base_size: (H, W) the images are resized to fit (keeping their ratio), or None.
        threshold, distance: see :func:`segfix_offsets`.
    """

    def __init__(
        self,
        net: SegFixNet,
        mean: Sequence[float],
        std: Sequence[float],
        base_size: Sequence[int] | None = None,
        threshold: float = THRESHOLD,
        distance: float = DISTANCE,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if not distance > 0:
            raise ValueError(f"distance must be positive, got {distance}")
        self.net = net.eval()
        self.threshold, self.distance = threshold, distance
        self._transform = eval_transforms(base_size, mean, std)

    def to(self, device: str | torch.device) -> SegFixRefiner:
        self.net.to(device)
        return self

    @torch.no_grad()
    def maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boundary probabilities (N, 1, h, w) and direction logits (N, 8, h, w) of uint8 RGB
        images (N, 3, H, W), at the size the network saw them."""
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 RGB (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        device = next(self.net.parameters()).device
        inputs = self._transform(tv_tensors.Image(images.to(device)))
        output = self.net(inputs.as_subclass(torch.Tensor))
        return output.boundary.sigmoid(), output.direction

    def offsets(self, images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The offsets (N, 2, H, W) at ``size`` for ``images``."""
        boundary_prob, direction_logits = self.maps(images)
        return segfix_offsets(boundary_prob, direction_logits, size, self.threshold, self.distance)

    def __call__(self, images: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {x.shape[0]} maps to refine")
        return shift_by_offsets(x, self.offsets(images, x.shape[-2:]).to(x.device))


def _segfix_names() -> list[str]:
    return [name for name in list_models() if name.startswith("segfix")]


def _check_segfix(record: CheckpointRecord, path: str | os.PathLike) -> None:
    if (record.model_config or {}).get("decoder") != "segfix":
        raise ValueError(
            f"{path} holds a {record.arch or 'model given from Python'!r} checkpoint, not a "
            f"SegFix one (one of {_segfix_names()}); train one with "
            "sdnseg fit --model.arch segfix_r18 (or segfix_efflite2)"
        )


def read_segfix_record(path: str | os.PathLike) -> CheckpointRecord:
    """The record of a SegFix checkpoint, read without its weights (a check before any model is
    built).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file, not an sdnseg checkpoint, or one of another model.
    """
    _, record = read_checkpoint(path, mmap=True)
    _check_segfix(record, path)
    return record


def load_segfix(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    threshold: float = THRESHOLD,
    distance: float = DISTANCE,
) -> SegFixRefiner:
    """A :class:`SegFixRefiner` from a checkpoint of ``sdnseg fit --model.arch segfix_...``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file, not an sdnseg checkpoint, a checkpoint of another model,
            or weights holding NaN or Inf or not fitting the network.
    """
    checkpoint, record = read_checkpoint(path, map_location)
    _check_segfix(record, path)
    config = ModelConfig.from_dict(record.model_config)
    net = build_model(config, record.num_classes, load_weights=False)
    weights = checkpoint_weights(checkpoint, path)
    state = {k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the SegFix network: {err}") from None
    data = record.data
    refiner = SegFixRefiner(net, data.mean, data.std, data.base_size, threshold, distance)
    return refiner.to(map_location)
