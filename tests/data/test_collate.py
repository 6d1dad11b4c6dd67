"""collate_segmentation: plain batching of dataset items."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from sdnseg.data import collate_segmentation


def test_collate_contract() -> None:
    items = [
        {
            "image": tv_tensors.Image(torch.rand(3, 4, 5)),
            "mask": tv_tensors.Mask(torch.zeros(4, 5, dtype=torch.int64)),
            "path": f"p{i}",
        }
        for i in range(2)
    ]
    batch = collate_segmentation(items)
    assert type(batch["image"]) is torch.Tensor and batch["image"].shape == (2, 3, 4, 5)
    assert batch["image"].dtype == torch.float32
    assert type(batch["mask"]) is torch.Tensor and batch["mask"].dtype == torch.int64
    assert batch["mask"].shape == (2, 4, 5) and batch["path"] == ["p0", "p1"]
    items[1]["mask"] = tv_tensors.Mask(torch.zeros(6, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"masks of different shapes .*batch size 1"):
        collate_segmentation(items)
