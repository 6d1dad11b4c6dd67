"""SegFixScores against counts written out in numpy, over several batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnseg.metrics import SegFixScores


def batch(seed: int):
    generator = torch.Generator().manual_seed(seed)
    boundary_logits = torch.randn(2, 1, 6, 7, generator=generator)
    direction_logits = torch.randn(2, 8, 6, 7, generator=generator)
    boundary = torch.randint(0, 2, (2, 6, 7), generator=generator)
    direction = torch.randint(0, 8, (2, 6, 7), generator=generator)
    ignored = torch.rand(2, 6, 7, generator=generator) < 0.2
    boundary[ignored], direction[ignored] = 255, 255
    return boundary_logits, direction_logits, boundary, direction


def counts(boundary_logits, direction_logits, boundary, direction, threshold):
    prob = 1 / (1 + np.exp(-boundary_logits[:, 0].numpy()))
    labelled = boundary.numpy() != 255
    predicted, true = (prob > threshold) & labelled, (boundary.numpy() == 1) & labelled
    right = direction_logits.numpy().argmax(1) == direction.numpy()
    return np.array(
        [(predicted & true).sum(), (predicted & ~true).sum(), (~predicted & true).sum(),
         (right & true).sum(), true.sum()]
    )  # fmt: skip


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_scores_are_the_pixel_counts(threshold):
    metric = SegFixScores(threshold=threshold)
    total = np.zeros(5)
    for seed in range(3):
        args = batch(seed)
        metric.update(*args)
        total += counts(*args, threshold)
    tp, fp, fn, right, true = total
    scores = metric.compute()
    assert scores["boundary_precision"].item() == pytest.approx(tp / (tp + fp))
    assert scores["boundary_recall"].item() == pytest.approx(tp / (tp + fn))
    assert scores["boundary_F"].item() == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert scores["direction_acc"].item() == pytest.approx(right / true)
    assert 0 < right < true


def test_nothing_counted_gives_zero_and_bad_shapes_are_named():
    metric = SegFixScores()
    boundary = torch.full((1, 3, 3), 255)
    metric.update(torch.zeros(1, 1, 3, 3), torch.zeros(1, 8, 3, 3), boundary, boundary)
    assert all(value == 0 for value in metric.compute().values())
    with pytest.raises(ValueError, match=r"\(1, 8, 3, 4\)"):
        metric.update(torch.zeros(1, 1, 3, 3), torch.zeros(1, 8, 3, 4), boundary, boundary)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        metric.update(torch.zeros(1, 2, 3, 3), torch.zeros(1, 8, 3, 3), boundary, boundary)
    with pytest.raises(ValueError, match="threshold"):
        SegFixScores(threshold=1.0)
