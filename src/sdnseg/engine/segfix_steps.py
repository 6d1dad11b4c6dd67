"""What :class:`~sdnseg.engine.SegmentationModule` does differently for a SegFix network.

A SegFix network (``arch="segfix_r18"``, :class:`~sdnseg.models.SegFixNet`; Yuan et al., ECCV
2020) predicts a boundary map and a direction map, not classes. It trains with
:class:`~sdnseg.models.losses.SegFixLoss` (the module's criterion) and is scored by
:class:`~sdnseg.metrics.SegFixScores` (``val/boundary_F``, ``val/direction_acc``...) and its
loss terms; it has no post-processing and predicts no label map of its own: it refines another
model's (``--postprocess segfix --segfix_checkpoint``, :mod:`sdnseg.inference.segfix`).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from sdnseg.metrics import SegFixScores
from sdnseg.models import ModelConfig, SegFixNet, SegFixOutput
from sdnseg.models.losses import SegFixLoss

__all__ = ["check_segfix_options", "is_segfix", "segfix_eval_step", "segfix_predict_error"]


def is_segfix(net: nn.Module | None, config: ModelConfig | None) -> bool:
    """Whether the module's model (given from Python, or named by a zoo config) is SegFix."""
    return isinstance(net, SegFixNet) or (config is not None and config.decoder == "segfix")


def check_segfix_options(name: str, postprocess: str) -> None:
    """A SegFix network takes no post-processing: there is no label map to refine."""
    if postprocess != "none":
        raise ValueError(
            f"--postprocess {postprocess} refines a segmentation model's predictions; "
            f"{name!r} is a SegFix network, which predicts none"
        )


def segfix_eval_step(
    net: nn.Module,
    criterion: SegFixLoss,
    batch: dict[str, Any],
    scores: SegFixScores,
) -> dict[str, Any]:
    """The loss terms of a batch at the masks' size (to log) after updating ``scores``."""
    masks, size = batch["mask"], batch["mask"].shape[-2:]
    output = SegFixOutput(
        *(
            F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for x in net(batch["image"])
        )
    )
    maps = criterion.targets(masks)
    boundary, direction = criterion.terms(output, masks, maps)
    loss = criterion.boundary_weight * boundary + criterion.direction_weight * direction
    scores.update(output.boundary, output.direction, *maps)
    return {"loss": loss, "boundary_loss": boundary, "direction_loss": direction}


def segfix_predict_error(name: str) -> ValueError:
    """The error of ``sdnseg predict`` with a SegFix network, saying how to use it instead."""
    return ValueError(
        f"{name} is a SegFix network: it refines the label maps of another model and predicts "
        "none itself; use it as sdnseg predict --ckpt_path <segmentation checkpoint> "
        "--postprocess segfix --segfix_checkpoint <this one>"
    )
