"""SegFix targets: hand-made label maps with known answers, and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdnseg.data import DIRECTIONS, segfix_target_maps, segfix_targets
from sdnseg.data.segfix_targets import quantize_directions

LEFT, UP_LEFT, UP, UP_RIGHT, RIGHT, DOWN_RIGHT, DOWN, DOWN_LEFT = range(8)


def brute_force(labels: np.ndarray, ignore_index: int = 255) -> tuple[np.ndarray, list]:
    """Per labelled pixel: the distance to the nearest pixel of another label (a double loop),
    and the vectors p - q to every nearest such q."""
    height, width = labels.shape
    rows, cols = np.mgrid[:height, :width]
    distance = np.full(labels.shape, np.inf)
    nearest: list = [[[] for _ in range(width)] for _ in range(height)]
    for i in range(height):
        for j in range(width):
            if labels[i, j] == ignore_index:
                distance[i, j] = 0
                continue
            other = labels != labels[i, j]
            if not other.any():
                continue
            d = np.hypot(rows - i, cols - j)[other]
            distance[i, j] = d.min()
            ties = d <= d.min() + 1e-9
            nearest[i][j] = list(zip(i - rows[other][ties], j - cols[other][ties], strict=True))
    return distance, nearest


def test_the_direction_table_is_openseg_s():
    # Direction k is the angle -180 + 45 k of atan2(dh, dw), and its vector rounds (sin, cos).
    angles = np.radians(-180 + 45 * np.arange(8))
    expected = np.stack([np.sin(angles), np.cos(angles)], axis=1).round().astype(np.int64)
    assert np.array_equal(DIRECTIONS, expected)
    assert np.array_equal(quantize_directions(DIRECTIONS[:, 0], DIRECTIONS[:, 1]), np.arange(8))
    # Bins are 45 degrees wide and centred: 22 degrees off still rounds to the same direction.
    for k, centre in enumerate(-180 + 45 * np.arange(8)):
        for off in (-22.0, 22.0):
            angle = np.radians(centre + off)
            assert quantize_directions(np.sin(angle), np.cos(angle)) == k


def test_a_square():
    labels = np.zeros((30, 30), dtype=np.int64)
    labels[10:20, 10:20] = 1
    targets = segfix_targets(labels, max_distance=5)
    rows, cols = np.mgrid[:30, :30]
    inside = labels == 1
    # Inside: the distance to the nearest side, straight across it (a pixel beside an edge: 1).
    to_side = np.minimum.reduce([rows - 9, 20 - rows, cols - 9, 20 - cols])
    assert np.array_equal(targets.distance[inside], to_side[inside].astype(np.float32))
    # Outside: the Euclidean distance to the square's nearest pixel.
    dh = np.maximum.reduce([10 - rows, rows - 19, np.zeros_like(rows)])
    dw = np.maximum.reduce([10 - cols, cols - 19, np.zeros_like(cols)])
    np.testing.assert_allclose(targets.distance[~inside], np.hypot(dh, dw)[~inside], rtol=1e-6)
    # The whole square is within 5 px of its edge; outside, a 5 px band around it.
    assert targets.boundary[inside].all()
    assert np.array_equal(targets.boundary[~inside], (np.hypot(dh, dw) <= 5)[~inside])
    # Directions point into each segment: into the square from its sides, away from it outside.
    assert targets.direction[12, 10] == RIGHT and targets.direction[10, 14] == DOWN
    assert targets.direction[17, 19] == LEFT and targets.direction[19, 14] == UP
    assert targets.direction[5, 14] == UP and targets.direction[14, 25] == RIGHT
    assert targets.direction[24, 14] == DOWN and targets.direction[14, 3] == LEFT
    assert targets.direction[8, 8] == UP_LEFT and targets.direction[21, 21] == DOWN_RIGHT
    assert targets.direction[8, 21] == UP_RIGHT and targets.direction[21, 8] == DOWN_LEFT


def test_two_touching_rectangles():
    labels = np.zeros((20, 30), dtype=np.int64)
    labels[:, 15:] = 2
    targets = segfix_targets(labels, max_distance=5)
    cols = np.broadcast_to(np.arange(30), (20, 30))
    expected = np.where(cols < 15, 15 - cols, cols - 14).astype(np.float32)
    assert np.array_equal(targets.distance, expected)
    assert np.array_equal(targets.boundary, (expected <= 5).astype(np.int64))
    assert (targets.boundary[:, 10:20] == 1).all() and (targets.boundary[:, :10] == 0).all()
    assert (targets.direction[:, :15] == LEFT).all() and (targets.direction[:, 15:] == RIGHT).all()


def test_a_thin_bar():
    labels = np.zeros((21, 30), dtype=np.int64)
    labels[9:12, 5:25] = 3  # three rows tall
    targets = segfix_targets(labels, max_distance=5)
    assert targets.distance[9, 10] == 1 and targets.distance[10, 10] == 2
    assert targets.distance[11, 10] == 1 and (targets.boundary[9:12, 5:25] == 1).all()
    assert (targets.direction[9, 6:24] == DOWN).all() and (targets.direction[11, 6:24] == UP).all()
    # The middle row is as far from both long sides: either way is into the bar.
    assert set(targets.direction[10, 7:23].tolist()) <= {UP, DOWN}
    # Around the bar: away from it, within 5 px.
    assert (targets.direction[4:9, 10] == UP).all() and (targets.direction[12:17, 10] == DOWN).all()
    assert (targets.boundary[4:9, 10] == 1).all() and targets.boundary[3, 10] == 0
    assert targets.direction[10, 2] == LEFT and targets.direction[10, 27] == RIGHT


def test_ignored_pixels_have_no_targets_but_make_edges():
    labels = np.zeros((12, 16), dtype=np.int64)
    labels[:, 8:] = 255
    targets = segfix_targets(labels, max_distance=3)
    assert (targets.boundary[:, 8:] == 255).all() and (targets.direction[:, 8:] == 255).all()
    assert (targets.distance[:, 8:] == 0).all()
    # Void's edge is an edge of the labelled region beside it.
    assert (targets.boundary[:, 5:8] == 1).all() and (targets.boundary[:, :5] == 0).all()
    assert (targets.direction[:, :8] == LEFT).all()


def test_one_class_everywhere_has_no_edge():
    targets = segfix_targets(np.full((6, 7), 4))
    assert np.isinf(targets.distance).all() and (targets.boundary == 0).all()
    assert (targets.direction == 255).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_and_directions_match_a_brute_force_search(seed):
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, 3, (4, 5)), np.ones((4, 3), dtype=np.int64))
    labels = labels[: 14 + seed, : 13 + seed].copy()
    labels[rng.random(labels.shape) < 0.05] = 255
    targets = segfix_targets(labels, max_distance=2.5)
    distance, nearest = brute_force(labels)
    np.testing.assert_allclose(targets.distance, distance, rtol=1e-6)
    labelled = labels != 255
    assert np.array_equal(targets.boundary[labelled], (distance[labelled] <= 2.5).astype(int))
    for i, j in zip(*np.nonzero(labelled & np.isfinite(distance)), strict=True):
        allowed = {int(quantize_directions(dh, dw)) for dh, dw in nearest[i][j]}
        assert targets.direction[i, j] in allowed, (i, j)


def test_the_batch_form_stacks_the_maps():
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(rng.integers(0, 3, (2, 9, 11)))
    boundary, direction = segfix_target_maps(masks, max_distance=2)
    for index in range(2):
        targets = segfix_targets(masks[index].numpy(), max_distance=2)
        assert np.array_equal(boundary[index].numpy(), targets.boundary)
        assert np.array_equal(direction[index].numpy(), targets.direction)
    assert boundary.dtype == direction.dtype == torch.int64


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        (np.zeros((2, 3, 4), dtype=np.int64), {}, r"label map \(H, W\)"),
        (np.zeros((3, 4)), {}, "integer"),
        (np.zeros((3, 4), dtype=np.int64), {"max_distance": 0}, "max_distance"),
    ],
)
def test_bad_input(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        segfix_targets(labels, **kwargs)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        segfix_target_maps(torch.zeros(4, 4, dtype=torch.long))
