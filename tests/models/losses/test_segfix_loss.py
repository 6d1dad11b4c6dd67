"""SegFixLoss against torch.nn.functional written out by hand, its ignore handling and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sdnseg.data import segfix_targets
from sdnseg.models import SegFixOutput, SegmentorOutput, create_model
from sdnseg.models.losses import SegFixLoss
from sdnseg.models.losses.segfix import balanced_weights


def square_masks() -> torch.Tensor:
    masks = torch.zeros(2, 20, 24, dtype=torch.long)
    masks[0, 5:15, 6:18] = 1
    masks[1, :, 12:] = 2
    masks[1, :3] = 255
    return masks


def random_output(masks: torch.Tensor, seed: int = 0, size=None) -> SegFixOutput:
    generator = torch.Generator().manual_seed(seed)
    n, height, width = masks.shape
    height, width = size or (height, width)
    return SegFixOutput(
        torch.randn(n, 1, height, width, generator=generator, dtype=torch.float64),
        torch.randn(n, 8, height, width, generator=generator, dtype=torch.float64),
    )


def reference(output: SegFixOutput, masks: torch.Tensor, max_distance: float = 5.0):
    """openseg's SegFixLoss by hand: a 2-way weighted cross-entropy for the boundary (logits
    (0, z): the same as BCE of z), an 8-way weighted one on the true boundary pixels; a class
    weighs 1 - its share of the pixels counted."""
    maps = [segfix_targets(m.numpy(), max_distance) for m in masks]
    boundary = torch.from_numpy(np.stack([t.boundary for t in maps]))
    direction = torch.from_numpy(np.stack([t.direction for t in maps]))
    labelled = boundary[boundary != 255]
    share = torch.stack([(labelled == c).double().mean() for c in (0, 1)])
    two_way = torch.cat([torch.zeros_like(output.boundary), output.boundary], dim=1)
    boundary_loss = F.cross_entropy(two_way, boundary, weight=1 - share, ignore_index=255)
    on_boundary = torch.where(boundary == 1, direction, 255)
    counted = on_boundary[on_boundary != 255]
    share = torch.stack([(counted == k).double().mean() for k in range(8)])
    direction_loss = F.cross_entropy(
        output.direction, on_boundary, weight=1 - share, ignore_index=255
    )
    return boundary_loss, direction_loss


def test_segfix_loss_equals_the_weighted_cross_entropies():
    masks = square_masks()
    output = random_output(masks)
    loss = SegFixLoss(boundary_weight=0.7, direction_weight=1.3)
    boundary_loss, direction_loss = loss.terms(output, masks)
    expected_boundary, expected_direction = reference(output, masks)
    torch.testing.assert_close(boundary_loss, expected_boundary)
    torch.testing.assert_close(direction_loss, expected_direction)
    torch.testing.assert_close(
        loss(output, masks), 0.7 * expected_boundary + 1.3 * expected_direction
    )


def test_unbalanced_terms_are_plain_means():
    masks = square_masks()
    output = random_output(masks, seed=1)
    boundary, direction = SegFixLoss().targets(masks)
    labelled = boundary != 255
    bce = F.binary_cross_entropy_with_logits(
        output.boundary[:, 0][labelled], (boundary[labelled] == 1).double()
    )
    ce = F.cross_entropy(
        output.direction, torch.where(boundary == 1, direction, 255), ignore_index=255
    )
    boundary_loss, direction_loss = SegFixLoss(balanced=False).terms(output, masks)
    torch.testing.assert_close(boundary_loss, bce)
    torch.testing.assert_close(direction_loss, ce)


def test_logits_are_resized_to_the_masks_and_ignored_pixels_do_not_count():
    masks = square_masks()
    small = random_output(masks, seed=2, size=(10, 12))
    resized = SegFixOutput(
        *(F.interpolate(x, size=(20, 24), mode="bilinear", align_corners=False) for x in small)
    )
    loss = SegFixLoss()
    torch.testing.assert_close(loss(small, masks), loss(resized, masks))
    changed = SegFixOutput(resized.boundary.clone(), resized.direction.clone())
    changed.boundary[1, :, :3] += 10  # the ignored rows of the second mask
    changed.direction[1, :, :3] -= 10
    torch.testing.assert_close(loss(changed, masks), loss(resized, masks))


def test_a_batch_without_boundary_gives_a_finite_loss_and_gradients():
    masks = torch.full((2, 8, 8), 3)  # one class, no edge (a void region's edge would be one)
    masks[1] = 255
    output = random_output(masks)
    for x in output:
        x.requires_grad_()
    boundary_loss, direction_loss = SegFixLoss().terms(output, masks)
    assert direction_loss == 0 and torch.isfinite(boundary_loss) and boundary_loss > 0
    (boundary_loss + direction_loss).backward()
    assert output.boundary.grad[0].abs().sum() > 0 and output.boundary.grad[1].abs().sum() == 0
    void = SegFixOutput(output.boundary[1:], output.direction[1:])
    boundary_loss, direction_loss = SegFixLoss().terms(void, masks[1:])
    assert boundary_loss == 0 and direction_loss == 0
    assert balanced_weights(torch.zeros(5, dtype=torch.long), 2, 255).tolist() == [1.0, 1.0]


def test_both_heads_of_a_segfix_network_receive_gradient():
    torch.manual_seed(0)
    net = create_model("segfix_r18", 3, backbone="resnet10t", backbone_kwargs={})
    masks = square_masks()[:, :16, :16].clamp(max=2)
    SegFixLoss()(net.forward_train(torch.randn(2, 3, 16, 16)), masks).backward()
    for layer in (net.head.boundary, net.head.direction, net.head.projections[0]):
        assert layer.weight.grad.abs().sum() > 0


def test_gradcheck_in_float64():
    masks = square_masks()[:1, 2:12, 4:14]
    output = random_output(masks)
    inputs = [x.clone().requires_grad_() for x in output]
    loss = SegFixLoss(boundary_weight=0.5)
    assert torch.autograd.gradcheck(lambda b, d: loss(SegFixOutput(b, d), masks), inputs)


def test_bad_input():
    masks = square_masks()
    with pytest.raises(ValueError, match="SegFixOutput"):
        SegFixLoss()(SegmentorOutput(torch.randn(2, 8, 20, 24)), masks)
    with pytest.raises(ValueError, match="8 direction logits"):
        SegFixLoss()(SegFixOutput(torch.randn(2, 1, 20, 24), torch.randn(2, 4, 20, 24)), masks)
    with pytest.raises(ValueError, match="max_distance"):
        SegFixLoss(max_distance=-1)
