"""SyntheticShapes: contract, determinism, class separability and false edges."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from sdnseg.data import SyntheticShapes


def test_item_contract() -> None:
    dataset = SyntheticShapes(num_images=4, size=(48, 64), num_classes=5, seed=3, split="val")
    assert len(dataset) == 4
    assert dataset.num_classes == 5 == len(dataset.classes) == len(dataset.palette)
    assert dataset.ignore_index == 255
    item = dataset[2]
    assert isinstance(item["image"], tv_tensors.Image) and item["image"].dtype == torch.uint8
    assert isinstance(item["mask"], tv_tensors.Mask) and item["mask"].dtype == torch.int64
    assert item["image"].shape == (3, 48, 64) and item["mask"].shape == (48, 64)
    assert int(item["mask"].min()) >= 0 and int(item["mask"].max()) < 5
    assert item["path"] == "synthetic/val/000002"
    with pytest.raises(IndexError):
        dataset[4]


def test_deterministic_per_seed_split_index() -> None:
    a = SyntheticShapes(num_images=3, size=32, seed=7)
    b = SyntheticShapes(num_images=3, size=32, seed=7)
    for i in range(3):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["mask"], b[i]["mask"])
    # Order of access does not matter.
    assert torch.equal(a[2]["image"], SyntheticShapes(3, 32, seed=7)[2]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])
    assert not torch.equal(a[0]["mask"], SyntheticShapes(3, 32, seed=8)[0]["mask"])
    assert not torch.equal(a[0]["mask"], SyntheticShapes(3, 32, seed=7, split="val")[0]["mask"])
    # Class appearance is shared across seeds and splits.
    assert a.palette == SyntheticShapes(3, 32, seed=9, split="test").palette


def test_class_mean_colours_differ() -> None:
    dataset = SyntheticShapes(num_images=16, size=64, num_classes=8, seed=0)
    sums, counts = np.zeros((8, 3)), np.zeros(8)
    for i in range(len(dataset)):
        image, mask = dataset.generate(i)
        for c in range(8):
            sums[c] += image[mask == c].sum(axis=0)
            counts[c] += (mask == c).sum()
    assert (counts > 0).all()
    means = sums / counts[:, None]
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(8, dtype=bool)].min() > 25.0


def test_strong_edges_lie_inside_regions() -> None:
    """Most strong image edges are false (texture), not class boundaries."""
    dataset = SyntheticShapes(num_images=8, size=64, num_classes=6, seed=1)
    inside = total = 0
    for i in range(len(dataset)):
        image, mask = dataset.generate(i)
        luminance = image.astype(np.float32).mean(axis=-1)
        edge = np.abs(np.diff(luminance, axis=1)) > 40
        boundary = mask[:, 1:] != mask[:, :-1]
        inside += int((edge & ~boundary).sum())
        total += int(edge.sum())
    assert total > 0 and inside / total > 0.6


def test_cheap() -> None:
    dataset = SyntheticShapes(num_images=20, size=128)
    dataset[0]
    start = time.perf_counter()
    for i in range(20):
        dataset[i]
    assert (time.perf_counter() - start) / 20 < 0.05  # about 2 ms on one core; loose for CI


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 0}, "num_images"),
        ({"size": 8}, "size"),
        ({"num_classes": 1}, "num_classes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyntheticShapes(**kwargs)
