"""MaskFormerLoss: focal and Dice terms against torchvision and numpy, the matcher against brute
force over permutations, the targets' sampling and ignore handling, and the loss's ordering."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

from sdnseg.models import SegmentorOutput
from sdnseg.models.losses import MaskFormerLoss
from sdnseg.models.losses.maskformer import (
    dice_loss,
    mask_targets,
    match,
    pairwise_mask_costs,
    sigmoid_focal_loss,
)


def _numpy_dice(logits: np.ndarray, targets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    prob = 1 / (1 + np.exp(-logits))
    out = []
    for p, t in zip(prob, targets, strict=True):
        p, t = p[valid > 0], t[valid > 0]
        out.append(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))
    return np.array(out)


def test_focal_matches_torchvision_on_the_valid_pixels():
    torch.manual_seed(0)
    logits = torch.randn(3, 40, dtype=torch.float64) * 3
    targets = (torch.rand(3, 40) > 0.6).double()
    valid = (torch.rand(40) > 0.3).double()
    ours = sigmoid_focal_loss(logits, targets, valid, alpha=0.25, gamma=2.0)
    keep = valid.bool()
    expected = tv_focal(logits[:, keep], targets[:, keep], alpha=0.25, gamma=2, reduction="none")
    torch.testing.assert_close(ours, expected.mean(1))
    all_valid = sigmoid_focal_loss(logits, targets, torch.ones(40, dtype=torch.float64), 0.4, 1.5)
    torch.testing.assert_close(all_valid, tv_focal(logits, targets, 0.4, 1.5).mean(1))


def test_dice_matches_a_numpy_formula():
    torch.manual_seed(1)
    logits = torch.randn(4, 30, dtype=torch.float64) * 2
    targets = (torch.rand(4, 30) > 0.5).double()
    valid = (torch.rand(30) > 0.2).double()
    targets = targets * valid  # a class mask covers labelled pixels only
    expected = _numpy_dice(logits.numpy(), targets.numpy(), valid.numpy())
    np.testing.assert_allclose(dice_loss(logits, targets, valid).numpy(), expected, rtol=1e-12)


def test_terms_gradcheck():
    logits = torch.randn(2, 12, dtype=torch.float64, requires_grad=True)
    targets, valid = (torch.rand(2, 12) > 0.5).double(), (torch.rand(12) > 0.2).double()
    assert torch.autograd.gradcheck(lambda x: sigmoid_focal_loss(x, targets, valid), (logits,))
    assert torch.autograd.gradcheck(lambda x: dice_loss(x, targets * valid, valid), (logits,))


def test_pairwise_costs_are_the_terms_of_every_pair():
    torch.manual_seed(2)
    logits = torch.randn(5, 24, dtype=torch.float64)
    valid = (torch.rand(24) > 0.25).double()
    targets = (torch.rand(3, 24) > 0.5).double() * valid
    focal, dice = pairwise_mask_costs(logits, targets, valid)
    for q, k in itertools.product(range(5), range(3)):
        pair = logits[q : q + 1], targets[k : k + 1]
        torch.testing.assert_close(focal[q, k], sigmoid_focal_loss(*pair, valid)[0])
        torch.testing.assert_close(dice[q, k], dice_loss(*pair, valid)[0])


@pytest.mark.parametrize("seed", range(5))
def test_matching_is_the_brute_force_minimum(seed):
    torch.manual_seed(seed)
    num_queries, num_classes = 5, 4
    class_logits = torch.randn(num_queries, num_classes + 1) * 2
    mask_logits = torch.randn(num_queries, 36) * 2
    label_map = torch.randint(0, 3, (1, 6, 6))
    label_map[0, 0, :3] = 255
    target = mask_targets(label_map, num_classes, 255, (6, 6))[0]
    labels, masks, valid = target
    focal, dice = pairwise_mask_costs(mask_logits, masks, valid)
    cost = -class_logits.softmax(-1)[:, labels] + 20 * focal + dice
    best = min(
        sum(cost[q, k] for k, q in enumerate(queries))
        for queries in itertools.permutations(range(num_queries), len(labels))
    )
    rows, cols = match(class_logits, mask_logits, target)
    assert len(rows) == len(labels) and sorted(cols.tolist()) == list(range(len(labels)))
    torch.testing.assert_close(cost[rows, cols].sum(), best)


def test_targets_sample_cell_centres_and_leave_ignored_pixels_out():
    label_map = torch.full((1, 8, 8), 255)
    label_map[0, 2, 2] = 1  # the centre of the first 4×4 cell (nearest-exact)
    label_map[0, 0, 0] = 2  # a corner: vanishes at stride 4
    label_map[0, 4:, 4:] = 0
    labels, masks, valid = mask_targets(label_map, 3, 255, (2, 2))[0]
    assert labels.tolist() == [0, 1]
    assert masks.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    assert valid.tolist() == [1, 0, 0, 1]
    with pytest.raises(ValueError, match="label 7, outside"):
        mask_targets(torch.full((1, 4, 4), 7), 3, 255, (2, 2))


def _outputs(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> SegmentorOutput:
    aux = {"class_logits": class_logits[None], "mask_logits": mask_logits[None]}
    return SegmentorOutput(torch.zeros(1), aux)


def test_a_perfect_prediction_beats_a_shuffled_one():
    label_map = torch.zeros(1, 8, 8, dtype=torch.long)
    label_map[0, :, 4:] = 1
    label_map[0, 6:, :] = 2
    labels, masks, _ = mask_targets(label_map, 3, 255, (8, 8))[0]
    class_logits = torch.full((1, 6, 4), -10.0)
    class_logits[0, 3:, 3] = 10.0  # queries 3-5: no object
    class_logits[0, labels, labels] = 10.0  # query k predicts class k
    mask_logits = torch.full((1, 6, 8, 8), -10.0)
    mask_logits[0, : len(labels)] = (masks.reshape(-1, 8, 8) * 2 - 1) * 10
    loss = MaskFormerLoss()
    perfect = loss(_outputs(class_logits, mask_logits), label_map)
    shuffled = loss(_outputs(class_logits, mask_logits[:, [1, 2, 0, 3, 4, 5]]), label_map)
    assert perfect < 0.01 < shuffled


def test_ignored_pixels_do_not_change_the_loss_and_no_target_means_no_object():
    torch.manual_seed(3)
    class_logits, mask_logits = torch.randn(2, 7, 4), torch.randn(2, 7, 4, 4)
    label_map = torch.randint(0, 3, (2, 8, 8))
    label_map[:, :4] = 255  # the top two rows of cells
    loss = MaskFormerLoss(deep_supervision=False)
    before = loss(_outputs(class_logits, mask_logits), label_map)
    changed = mask_logits.clone()
    changed[:, :, :2] = 50.0
    torch.testing.assert_close(loss(_outputs(class_logits, changed), label_map), before)
    empty = torch.full((2, 8, 8), 255)
    ce, focal, dice = loss.terms(_outputs(class_logits, mask_logits), empty)
    no_object = torch.full((2, 7), 3)
    torch.testing.assert_close(ce, F.cross_entropy(class_logits.transpose(1, 2), no_object))
    assert focal == 0 and dice == 0


def test_deep_supervision_sums_the_layers_and_weights_are_applied():
    torch.manual_seed(4)
    class_logits, mask_logits = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4, 4)
    label_map = torch.randint(0, 3, (2, 16, 16))
    outputs = SegmentorOutput(
        torch.zeros(1), {"class_logits": class_logits, "mask_logits": mask_logits}
    )
    loss = MaskFormerLoss(class_weight=2.0, mask_weight=5.0, dice_weight=3.0)
    layers = [
        loss.layer_terms(class_logits[k], mask_logits[k], mask_targets(label_map, 3, 255, (4, 4)))
        for k in range(3)
    ]
    expected = sum(2 * ce + 5 * focal + 3 * dice for ce, focal, dice in layers)
    torch.testing.assert_close(loss(outputs, label_map), expected)
    last = MaskFormerLoss(
        class_weight=2.0, mask_weight=5.0, dice_weight=3.0, deep_supervision=False
    )
    ce, focal, dice = layers[-1]
    torch.testing.assert_close(last(outputs, label_map), 2 * ce + 5 * focal + 3 * dice)


def test_errors_name_what_is_wrong():
    loss = MaskFormerLoss()
    with pytest.raises(
        ValueError, match="aux\\['class_logits'\\].*got SegmentorOutput with aux \\['aux'\\]"
    ):
        loss(
            SegmentorOutput(torch.zeros(1, 3, 4, 4), {"aux": torch.zeros(1)}), torch.zeros(1, 4, 4)
        )
    outputs = _outputs(torch.randn(1, 5, 4), torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match="N = 1"):
        loss(outputs, torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="no_object_weight"):
        MaskFormerLoss(no_object_weight=2.0)
