"""Vanilla conv, CDC and SDC with one kernel, the points they are compared at and their figure
(Fig. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sdnseg.nn.functional import semantic_difference_conv2d
from sdnseg.viz import operator_responses as viz
from tests.viz.helpers import assert_png


def test_sdc_ignores_image_edges_across_the_guidance_boundary_only():
    x = torch.zeros(1, 3, 8, 20)
    x[..., 6:] = 1.0  # an edge inside the region the guidance calls one class
    x[..., 12:] = 3.0  # an edge on the guidance boundary
    guidance = torch.zeros(1, 2, 8, 20)
    guidance[:, 0, :, :12] = 1
    guidance[:, 1, :, 12:] = 1
    weight = viz.seeded_kernel()
    out = viz.operator_responses(x, guidance, weight, lam=viz.default_lam(2))
    pixel_difference = semantic_difference_conv2d(x, guidance, weight, similarity="ones")
    sdc, ones = out["SDC"].abs().mean(1)[0], pixel_difference.abs().mean(1)[0]
    assert torch.allclose(sdc[:, 5:7], ones[:, 5:7], atol=1e-6)  # same as a difference conv
    assert (sdc[:, 11:13] < 0.1 * ones[:, 11:13]).all()  # damped across the boundary
    assert torch.allclose(out["conv"], nn.functional.conv2d(x, weight, padding=1))


def test_pick_points_straddles_the_intra_region_edge_and_picks_b_in_another_region():
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, 8:] = 100  # texture edge inside region 0
    image[:, 16:] = 200  # boundary between the regions
    labels = np.zeros((24, 32), np.int64)
    labels[:, 16:] = 1
    a1, a2, b = viz.pick_points(image, labels)
    assert labels[a1] == labels[a2] == 0 and labels[b] == 1
    assert sorted([a1[1], a2[1]])[0] < 8 <= sorted([a1[1], a2[1]])[1]


def test_operator_response_figure_is_written_as_a_png(fcn, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    probs = torch.zeros(3, 32, 32)
    probs[0, :, :16], probs[1, :, 16:] = 1, 1
    result = viz.operator_response_figure(
        tmp_path / "ops.png",
        rgb,
        [(4, 4), (4, 10), (20, 25)],
        guidance=probs,
        kernel=viz.stem_kernel(fcn),
        palette=[(0, 0, 0), (255, 0, 0), (0, 255, 0)],
    )
    assert_png(result.path, tmp_path)
    assert result.names == ["A1", "A2", "B"] and result.labels == [0, 0, 1]
    assert set(result.values) == {"conv", "CDC", "SDC"}
    assert all(len(v) == 3 and min(v) >= 0 for v in result.values.values())
    with pytest.raises(ValueError, match="outside"):
        viz.operator_response_figure(tmp_path / "x.png", rgb, [(40, 0)], guidance=probs)
