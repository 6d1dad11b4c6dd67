"""Class-weighted cross-entropy, median-frequency weights and OHEM against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnseg.models.losses import (
    CrossEntropyLoss,
    OHEMCrossEntropyLoss,
    class_pixel_counts,
    median_frequency_weights,
    ohem_keep_mask,
)


def batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 9, 7, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 9, 7), generator=generator)
    target[0, :3] = 255
    return logits, target


def test_weighted_cross_entropy_is_torchs_weighted_sum_over_the_pixel_count():
    logits, target = batch()
    weight = [0.5, 2.0, 1.0, 3.0]
    summed = F.cross_entropy(
        logits, target, torch.tensor(weight, dtype=logits.dtype), ignore_index=255, reduction="sum"
    )
    torch.testing.assert_close(CrossEntropyLoss(weight)(logits, target), summed / target.numel())
    labelled = (target != 255).sum()
    ours = CrossEntropyLoss(weight, avg_non_ignore=True)(logits, target)
    torch.testing.assert_close(ours, summed / labelled)
    unweighted = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(CrossEntropyLoss(avg_non_ignore=True)(logits, target), unweighted)


def test_class_weight_of_the_wrong_length_names_both_sizes():
    logits, target = batch()
    with pytest.raises(
        ValueError, match="class_weight has 3 entries but the logits have 4 classes"
    ):
        CrossEntropyLoss([1.0, 1.0, 1.0])(logits, target)
    with pytest.raises(ValueError, match="median_frequency"):
        CrossEntropyLoss("median_frequency")(logits, target)
    with pytest.raises(ValueError, match="'inverse'"):
        CrossEntropyLoss("inverse")


def test_median_frequency_weights_follow_segnets_definition():
    masks = [
        torch.tensor([[0, 0, 1, 1], [0, 0, 1, 255]]),  # 8 pixels: 4 of class 0, 3 of 1, 1 void
        torch.tensor([[0, 2, 2, 2], [0, 2, 2, 2]]),  # 8 pixels: 2 of class 0, 6 of class 2
    ]
    pixels, image_pixels = class_pixel_counts(masks, num_classes=4)
    assert pixels.tolist() == [6, 3, 6, 0] and image_pixels.tolist() == [16, 8, 8, 0]
    freq = np.array([6 / 16, 3 / 8, 6 / 8])
    expected = np.median(freq) / freq
    weights = median_frequency_weights(pixels, image_pixels)
    np.testing.assert_allclose(weights[:3].numpy(), expected, rtol=1e-6)
    assert weights[3] == 0  # absent class: nothing to weight
    plain = median_frequency_weights(pixels)  # counts only: plain frequencies
    np.testing.assert_allclose(plain[:3].numpy(), np.median([6, 3, 6]) / np.array([6, 3, 6]))
    with pytest.raises(ValueError, match="class id 7 outside"):
        class_pixel_counts([torch.tensor([[7]])], num_classes=4)


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.7, 10), (0.7, 100), (0.2, 5), (None, 30)])
def test_ohem_keeps_the_pixels_a_direct_sort_picks(thresh, min_kept):
    logits, target = batch(1)
    keep = ohem_keep_mask(logits, target, thresh, min_kept)
    valid = (target != 255).flatten()
    labels = target.flatten().clamp(max=3)
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 4)
    true_prob = probs[torch.arange(labels.numel()), labels].numpy()
    budget = min_kept * target.shape[0]
    indices = np.flatnonzero(valid.numpy())
    if thresh is not None:
        ranked = np.sort(true_prob[indices])
        cut = max(thresh, ranked[min(budget, ranked.size - 1)])
        expected = set(indices[true_prob[indices] < cut].tolist())
    else:
        losses = -np.log(true_prob[indices])
        expected = set(indices[np.argsort(-losses)[:budget]].tolist())
    assert set(np.flatnonzero(keep.flatten().numpy()).tolist()) == expected
    loss = OHEMCrossEntropyLoss(thresh, min_kept)(logits, target)
    per_pixel = F.cross_entropy(logits, target.clamp(max=3), reduction="none").flatten()
    torch.testing.assert_close(loss, per_pixel[sorted(expected)].sum() / target.numel())


def test_ohem_defaults_are_mmsegs():
    loss = OHEMCrossEntropyLoss()
    assert (loss.thresh, loss.min_kept) == (0.7, 100000)
