"""Dice, focal and Lovász-softmax against segmentation_models_pytorch.losses (an independent
implementation), on random inputs with ignored pixels."""

from __future__ import annotations

import pytest
import torch
from segmentation_models_pytorch import losses as smp_losses

from sdnseg.models.losses import DiceLoss, FocalLoss, LovaszSoftmaxLoss


def random_batch(seed: int, classes: int = 5, ignored: float = 0.2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, classes, 12, 10, generator=generator, dtype=dtype) * 2
    target = torch.randint(0, classes - 1, (2, 12, 10), generator=generator)  # class 4 absent
    target[torch.rand(target.shape, generator=generator) < ignored] = 255
    return logits, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dice_equals_smp(seed):
    logits, target = random_batch(seed)
    reference = smp_losses.DiceLoss("multiclass", ignore_index=255)(logits, target)
    torch.testing.assert_close(DiceLoss()(logits, target), reference)
    smoothed = smp_losses.DiceLoss("multiclass", ignore_index=255, smooth=0.5)(logits, target)
    torch.testing.assert_close(DiceLoss(smooth=1.0)(logits, target), smoothed)  # half of ours


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (0.5, 0.25)])
def test_focal_equals_smp(seed, gamma, alpha):
    logits, target = random_batch(seed)
    reference = smp_losses.FocalLoss("multiclass", alpha=alpha, gamma=gamma, ignore_index=255)
    torch.testing.assert_close(FocalLoss(gamma, alpha)(logits, target), reference(logits, target))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_equals_smp(seed, per_image):
    logits, target = random_batch(seed, dtype=torch.float32)  # SMP's Lovász mixes in float32
    reference = smp_losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=255)
    ours = LovaszSoftmaxLoss(per_image=per_image)(logits, target)
    torch.testing.assert_close(ours, reference(logits, target))


@pytest.mark.parametrize("loss", [DiceLoss(), FocalLoss(), LovaszSoftmaxLoss()])
def test_ignored_pixels_do_not_count(loss):
    logits, target = random_batch(3)
    changed = logits.clone().requires_grad_()
    with torch.no_grad():
        changed[target.unsqueeze(1).expand_as(logits) == 255] = 100.0  # any value where ignored
    torch.testing.assert_close(loss(changed, target), loss(logits, target))
    loss(changed, target).backward()
    assert changed.grad[target.unsqueeze(1).expand_as(logits) == 255].abs().max() == 0
    everything_ignored = torch.full_like(target, 255)
    assert loss(logits, everything_ignored) == 0


def test_logits_are_resized_and_shapes_checked():
    logits, target = random_batch(4)
    small = logits[..., ::2, ::2]
    resized = torch.nn.functional.interpolate(small, size=target.shape[-2:], mode="bilinear")
    torch.testing.assert_close(DiceLoss()(small, target), DiceLoss()(resized, target))
    with pytest.raises(ValueError, match=r"DiceLoss expects logits \(N, C, H, W\).*\(2, 12, 10\)"):
        DiceLoss()(logits[0], target)
