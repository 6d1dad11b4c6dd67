"""Batching of dataset items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["collate_segmentation"]

Batch = dict[str, Any]


def collate_segmentation(items: Sequence[dict[str, Any]]) -> Batch:
    """Stack items into ``{"image": (B, 3, H, W) float32, "mask": (B, H, W) int64, "path": list}``.

    Plain tensors come out (no tv_tensor subclasses). Raises ``ValueError`` naming the shapes if
    items differ in size (evaluation items keep their own sizes: use batch size 1 there).
    """
    out: Batch = {"path": [item["path"] for item in items]}
    for key, dtype in (("image", torch.float32), ("mask", torch.int64)):
        tensors = [item[key].as_subclass(torch.Tensor) for item in items]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(
                f"cannot batch {key}s of different shapes {sorted(shapes)} "
                f"(e.g. {out['path'][0]}); use batch size 1 for full-size evaluation"
            )
        out[key] = torch.stack(tensors).to(dtype)
    return out
