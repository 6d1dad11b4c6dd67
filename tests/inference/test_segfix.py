"""SegFix refinement: offsets and shifts against loops, ground-truth offsets undoing a dilation and
raising boundary F, and the refiner loaded from a checkpoint written by hand."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

import sdnseg
from sdnseg.data import DIRECTIONS, segfix_targets
from sdnseg.inference import (
    load_segfix,
    refine_with_offsets,
    segfix_offsets,
    shift_by_offsets,
)
from sdnseg.inference import postprocess as pp
from sdnseg.inference.segfix import direction_offsets
from sdnseg.metrics import BoundaryFScore
from sdnseg.models import build_model, get_config

from .conftest import TINY, todays_checkpoint

RIGHT, DOWN = 4, 6


def ground_truth_maps(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SegFix's maps as a perfect network would give them: the targets of ``labels``."""
    targets = segfix_targets(labels.numpy())
    boundary = torch.from_numpy(targets.boundary == 1).float()[None]
    direction = torch.from_numpy(np.where(targets.direction == 255, 0, targets.direction))
    return boundary, F.one_hot(direction, 8).permute(2, 0, 1)[None].float()


def blobs() -> torch.Tensor:
    """Discs and rectangles on a background: no structure thinner than the offsets."""
    rows, cols = np.mgrid[:96, :128]
    labels = np.zeros((96, 128), dtype=np.int64)
    labels[(rows - 30) ** 2 + (cols - 35) ** 2 < 18**2] = 1
    labels[50:85, 60:115] = 2
    labels[(rows - 70) ** 2 + (cols - 30) ** 2 < 14**2] = 3
    labels[10:40, 80:120] = 4
    return torch.from_numpy(labels)


def test_shift_reads_where_the_offsets_point_clamped_to_the_image():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (2, 5, 6), generator=generator)
    offsets = torch.randint(-3, 4, (2, 2, 5, 6), generator=generator)
    probs = torch.rand(2, 3, 5, 6, generator=generator)
    expected_labels, expected_probs = torch.empty_like(labels), torch.empty_like(probs)
    for n in range(2):
        for i in range(5):
            for j in range(6):
                si = min(max(i + int(offsets[n, 0, i, j]), 0), 4)
                sj = min(max(j + int(offsets[n, 1, i, j]), 0), 5)
                expected_labels[n, i, j] = labels[n, si, sj]
                expected_probs[n, :, i, j] = probs[n, :, si, sj]
    assert torch.equal(shift_by_offsets(labels, offsets), expected_labels)
    assert torch.equal(shift_by_offsets(probs, offsets), expected_probs)


def test_offsets_follow_the_direction_table_and_scale_with_the_size():
    direction = torch.arange(8).view(1, 2, 4)
    boundary = torch.ones(1, 2, 4, dtype=torch.bool)
    boundary[0, 1, 3] = False
    offsets = direction_offsets(direction, boundary, distance=2)
    expected = torch.from_numpy(DIRECTIONS * 2).T.reshape(1, 2, 2, 4).clone()
    expected[0, :, 1, 3] = 0
    assert torch.equal(offsets, expected)
    # Maps at 4x5 refining labels at 8x15: 2 px become 4 px along rows, 6 along columns.
    prob = torch.full((1, 1, 4, 5), 0.9)
    logits = torch.zeros(1, 8, 4, 5)
    logits[:, DOWN, :, :2] = logits[:, RIGHT, :, 2:] = 1
    offsets = segfix_offsets(prob, logits, size=(8, 15))
    assert offsets.shape == (1, 2, 8, 15)
    assert set(map(tuple, offsets[0].flatten(1).T.tolist())) == {(4, 0), (0, 6)}
    assert (segfix_offsets(prob * 0.5, logits, size=(8, 15)) == 0).all()  # 0.45: not boundary


def dilate(labels: torch.Tensor, classes: tuple[int, ...], pixels: int = 2) -> torch.Tensor:
    grown = labels.clone()
    for c in classes:
        grown[torch.from_numpy(ndimage.binary_dilation(labels.numpy() == c, iterations=pixels))] = c
    return grown


def test_ground_truth_offsets_undo_a_two_pixel_dilation():
    labels = torch.zeros(1, 40, 50, dtype=torch.long)
    labels[0, 10:28, 12:35] = 1
    boundary, direction = ground_truth_maps(labels[0])
    grown = dilate(labels, (1,))
    assert (grown != labels).sum() == 2 * 2 * (18 + 23) + 4  # 2 px sides, a pixel per corner
    assert torch.equal(refine_with_offsets(grown, boundary, direction, distance=2), labels)
    # One pixel is not enough to reach back over two.
    assert not torch.equal(refine_with_offsets(grown, boundary, direction, distance=1), labels)
    # Where a third segment meets two, the nearest edge may lie along the other side of a
    # corner: all but those few corner pixels are corrected.
    labels[0, 22:40, 30:50] = 2
    boundary, direction = ground_truth_maps(labels[0])
    for c in (1, 2):
        grown = dilate(labels, (c,))
        refined = refine_with_offsets(grown, boundary, direction, distance=2)
        wrong, left = (grown != labels).sum(), (refined != labels).sum()
        assert wrong > 70 and left <= 0.15 * wrong, (c, wrong, left)
        assert not ((refined != labels) & (grown == labels)).any()  # nothing right made wrong


def boundary_f(pred: torch.Tensor, labels: torch.Tensor) -> float:
    metric = BoundaryFScore(5, tolerances=(1,))
    metric.update(pred, labels)
    return metric.compute()["BF@1px"].item()


def test_ground_truth_offsets_raise_the_boundary_f_of_coarse_and_dilated_predictions():
    labels = blobs()
    boundary, direction = ground_truth_maps(labels)
    onehot = F.one_hot(labels, 5).permute(2, 0, 1)[None].float()
    coarse = F.interpolate(F.avg_pool2d(onehot, 8), size=labels.shape, mode="bilinear")
    for pred in (coarse.argmax(1), dilate(labels, (1, 3))[None]):
        before = boundary_f(pred, labels[None])
        after = boundary_f(refine_with_offsets(pred, boundary, direction), labels[None])
        assert before < 0.92 and after > before + 0.07 and after > 0.98, (before, after)


# --- the refiner of a checkpoint -------------------------------------------------------------


def segfix_checkpoint(base_size=None) -> dict:
    """A SegFix checkpoint in the layout of a fit's last.ckpt, whose network calls every pixel
    boundary and points it right (its last convolutions set by hand)."""
    checkpoint = todays_checkpoint()
    config = get_config("segfix_r18", **TINY)
    torch.manual_seed(0)
    net = build_model(config, 6)
    with torch.no_grad():
        for layer in (net.head.boundary, net.head.direction):
            layer.weight.zero_()
            layer.bias.zero_()
        net.head.boundary.bias.fill_(5.0)
        net.head.direction.bias[RIGHT] = 5.0
    checkpoint["state_dict"] = {f"net.{k}": v for k, v in net.state_dict().items()}
    checkpoint["sdnseg"] = {
        **checkpoint["sdnseg"],
        "arch": "segfix_r18",
        "model_config": config.to_dict(),
        "mean": [127.5] * 3,
        "std": [127.5] * 3,
        "base_size": base_size,
    }
    return checkpoint


def test_the_refiner_runs_its_network_and_scales_its_offsets(tmp_path):
    path = tmp_path / "segfix.ckpt"
    torch.save(segfix_checkpoint(base_size=[20, 24]), path)
    refiner = load_segfix(path, distance=2)
    images = torch.randint(0, 256, (1, 3, 40, 48), dtype=torch.uint8)
    labels = torch.arange(48).repeat(1, 40, 1)
    # The network sees the image at 20x24: 2 px there are 4 px in the 40x48 label map.
    assert torch.equal(refiner(images, labels), (labels + 4).clamp(max=47))
    probs = torch.rand(1, 3, 40, 48)
    refined = pp.postprocess("segfix", images, probs, refiner)
    assert torch.equal(refined[..., :44], probs[..., 4:])
    boundary_prob, direction_logits = refiner.maps(images)
    assert boundary_prob.shape == (1, 1, 20, 24) and direction_logits.shape == (1, 8, 20, 24)


def test_a_predictor_refines_with_segfix(tmp_path, checkpoint_path):
    path = tmp_path / "segfix.ckpt"
    torch.save(segfix_checkpoint(), path)
    model, refiner = sdnseg.load_model(checkpoint_path), load_segfix(path, distance=3)
    image = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    plain = model.predict(image)
    refined = model.predict(image, postprocess="segfix", segfix=refiner)
    assert torch.equal(refined[:, :27], plain[:, 3:])
    assert torch.equal(refined[:, 27:], plain[:, 29:].expand(-1, 3))


def test_bad_checkpoints_and_arguments(tmp_path, checkpoint_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_segfix(tmp_path / "missing.ckpt")
    with pytest.raises(
        ValueError, match=r"today.ckpt holds a 'fcn_r18d8' checkpoint, not a SegFix"
    ):
        load_segfix(checkpoint_path)
    path = tmp_path / "segfix.ckpt"
    checkpoint = segfix_checkpoint()
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="SegFix network.*load_segfix"):
        sdnseg.load_model(path)
    broken = copy.deepcopy(checkpoint)
    broken["state_dict"].pop("net.head.direction.weight")
    torch.save(broken, tmp_path / "broken.ckpt")
    with pytest.raises(ValueError, match="broken.ckpt do not fit the SegFix network"):
        load_segfix(tmp_path / "broken.ckpt")
    with pytest.raises(ValueError, match="needs a SegFix network"):
        pp.postprocess("segfix", torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.rand(1, 2, 4, 4))
    refiner = load_segfix(path)
    with pytest.raises(ValueError, match="uint8 RGB"):
        refiner.maps(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="distance"):
        load_segfix(path, distance=0)
    with pytest.raises(ValueError, match=r"direction_logits must be \(N, 8"):
        segfix_offsets(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4, 4))
