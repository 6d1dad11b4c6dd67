"""Kervadec et al.'s boundary loss against signed distances computed by brute force in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnseg.models.losses import BoundaryLoss, signed_distance_maps


def brute_force_phi(label: np.ndarray, c: int) -> np.ndarray:
    """Outside: distance to the nearest pixel of c; inside: −(distance to the nearest other − 1)."""
    inside = label == c
    if not inside.any() or inside.all():
        return np.zeros(label.shape)
    points = np.argwhere(np.ones_like(label, dtype=bool))
    dist = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    flat = inside.ravel()
    to_inside = dist[:, flat].min(axis=1)
    to_outside = dist[:, ~flat].min(axis=1)
    phi = np.where(flat, -(to_outside - 1), to_inside)
    return phi.reshape(label.shape)


def test_signed_distances_and_loss_equal_the_brute_force_ones():
    generator = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 9, 8, dtype=torch.long)
    target[0, 2:6, 1:5] = 1
    target[0, 7:, 6:] = 2
    target[1] = torch.randint(0, 3, (9, 8), generator=generator)
    target[1, 0, :3] = 255
    phi = signed_distance_maps(target, 4)
    for n in range(2):
        for c in range(4):
            label = target[n].numpy()
            np.testing.assert_allclose(phi[n, c].numpy(), brute_force_phi(label, c), atol=1e-6)
    logits = torch.randn(2, 4, 9, 8, generator=generator, dtype=torch.float64)
    probs = logits.softmax(1).numpy()
    valid = target.numpy() != 255
    expected = sum(
        (probs[n, c] * brute_force_phi(target[n].numpy(), c))[valid[n]].sum()
        for n in range(2)
        for c in range(4)
    ) / (valid.sum() * 4)
    torch.testing.assert_close(BoundaryLoss()(logits, target), torch.tensor(expected).double())
    foreground = sum(
        (probs[n, c] * brute_force_phi(target[n].numpy(), c))[valid[n]].sum()
        for n in range(2)
        for c in (1, 2)
    ) / (valid.sum() * 2)
    torch.testing.assert_close(
        BoundaryLoss(classes=[1, 2])(logits, target), torch.tensor(foreground).double()
    )


def test_boundary_loss_is_lowest_for_the_right_region_and_checks_classes():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 3:7, 3:7] = 1
    right = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).double() * 20
    shifted = right.roll(2, dims=-1)
    assert BoundaryLoss()(right, target) < BoundaryLoss()(shifted, target)
    with pytest.raises(ValueError, match=r"classes \[5\] outside \[0, 2\)"):
        BoundaryLoss(classes=[5])(right, target)
