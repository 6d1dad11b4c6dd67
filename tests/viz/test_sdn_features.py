"""SDN feature capture, its display reductions and the SDN-stage figure (Fig. 6), on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import sdnseg
from sdnseg.nn.functional import neighbour_similarity, semantic_difference_conv2d
from sdnseg.viz import sdn_features as viz
from tests.viz.helpers import assert_png, tiny


@pytest.fixture(scope="module")
def fcn_stages(fcn, images) -> list[dict]:
    return viz.capture_sdn(fcn, images)


def test_capture_single_scale_records_one_stage_as_the_forward_pass_saw_it(fcn, images, fcn_stages):
    (stage,) = fcn_stages
    assert stage["name"] == "neck.sdn" and stage["operator"] == "sdc"
    u = fcn.backbone(images)[-1]
    assert torch.allclose(stage["U"], u)
    assert stage["F_sdn"].shape == u.shape == (1, 512, 4, 4)  # stride 8 at 32 px
    assert torch.allclose(stage["F_sdn"], fcn.neck(fcn.backbone(images))[-1])
    assert stage["V"].shape == (1, 8, 2, 2)  # Φ halves the last map
    assert stage["V_resized"].shape == stage["X"].shape == stage["Y"].shape == (1, 8, 4, 4)
    assert stage["S"].shape == (1, 8, 4, 4)  # K = 3·3 − 1
    assert ((stage["S"] > 0) & (stage["S"] <= 1)).all()
    assert (
        stage["kernel_size"] == (3, 3) and stage["dilation"] == 1 and stage["valid_size"] == (4, 4)
    )
    # S is what the SDC used: Y is reproduced from X, V and the op's weight and lam.
    op = fcn.neck.sdn.op
    assert stage["lam"] == pytest.approx(op.lam.item()) and stage["lam"] < 0.5
    s = neighbour_similarity(stage["V_resized"], (3, 3), 1, "perona_malik", op.lam)
    assert torch.allclose(stage["S"], s)
    assert torch.equal(stage["S"], op.similarity_map(stage["X"], stage["V"]))  # the op's own S
    y = semantic_difference_conv2d(stage["X"], stage["V_resized"], op.weight, lam=op.lam)
    assert torch.allclose(y, stage["Y"], atol=1e-5)


def test_capture_multi_scale_records_every_stage_with_k_neighbour_maps():
    net = tiny("semfpn_r18_sdn", kernel_size=5)
    stages = viz.capture_sdn(net, torch.randn(1, 3, 40, 36))  # padded to 64×64 by the segmentor
    assert [s["name"] for s in stages] == [f"neck.sdns.{i}" for i in range(4)]
    for stage, reduction in zip(stages, (4, 8, 16, 32), strict=True):
        n, _, h, w = stage["U"].shape
        assert h == w == 64 // reduction and stage["F_sdn"].shape == stage["U"].shape
        assert stage["S"].shape == (n, 24, h, w)  # K = 5·5 − 1
        assert stage["V_resized"].shape[-2:] == (h, w)
        assert ((stage["S"] > 0) & (stage["S"] <= 1)).all()
        assert stage["valid_size"] == (-(-h * 40 // 64), -(-w * 36 // 64))


def test_capture_without_sdc_has_no_similarity_and_restores_the_model():
    net = tiny("fcn_r18d8_sdn", operator="cdc").train()
    (stage,) = viz.capture_sdn(net, torch.randn(1, 3, 32, 32))
    assert stage["operator"] == "cdc" and stage["S"] is None and stage["Y"].shape == (1, 8, 4, 4)
    assert net.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_a_model_without_sdn_neck_is_a_clear_error():
    net = sdnseg.create_model("fcn_r18d8", 3, backbone="resnet10t", backbone_kwargs={})
    with pytest.raises(ValueError, match="no SDN neck"):
        viz.capture_sdn(net, torch.randn(1, 3, 32, 32))


class _FixedGuidance(nn.Module):
    """Stands in for Φ: returns a given guidance map whatever the feature."""

    def __init__(self, v: torch.Tensor) -> None:
        super().__init__()
        self.v = v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.v.expand(x.shape[0], -1, -1, -1)


@pytest.mark.parametrize("step", [0.0, 3.0])
def test_similarity_is_low_across_a_guidance_step_and_one_where_it_is_constant(step):
    net = tiny("fcn_r18d8_sdn")
    v = torch.zeros(1, 8, 4, 4)
    v[..., 2:] = step  # a vertical boundary between columns 1 and 2 of the 4×4 map
    net.neck.guidance = _FixedGuidance(v)
    (stage,) = viz.capture_sdn(net, torch.randn(1, 3, 32, 32))
    mean, low = viz.similarity_summary(stage["S"][0], stage["kernel_size"])
    if step == 0:
        assert torch.equal(stage["S"], torch.ones_like(stage["S"]))
        assert (mean == 1).all() and (low == 1).all()
    else:
        across = 1 / np.sqrt(1 + step**2 / stage["lam"] ** 2)  # Perona–Malik, d2 = step²
        assert np.allclose(low[:, 1:3], across, atol=1e-5)
        assert (low[:, [0, 3]] == 1).all() and (mean[:, 1:3] < mean[:, [0, 3]]).all()


def test_pca_rgb_is_an_image_in_unit_range_led_by_the_main_direction():
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 7).expand(5, 7)
    direction = torch.randn(16, generator=g)
    features = direction[:, None, None] * ramp + 0.01 * torch.randn(16, 5, 7, generator=g)
    rgb = viz.pca_rgb(features)
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert np.array_equal(rgb, viz.pca_rgb(features[None]))  # deterministic, batch of one
    first = rgb[..., 0].mean(0)
    assert np.all(np.diff(first) >= 0) or np.all(np.diff(first) <= 0)
    assert first.max() - first.min() > 0.9


def test_pca_rgb_with_few_channels_or_no_spread_and_magnitude():
    assert np.all(viz.pca_rgb(torch.randn(2, 4, 4))[..., 2] == 0)
    assert np.all(viz.pca_rgb(torch.ones(6, 3, 3)) == 0)
    m = viz.magnitude(torch.tensor([[[1.0, -2.0]], [[3.0, 0.0]]]))  # (2, 1, 2)
    assert m.shape == (1, 2) and np.allclose(m, [[1.0, 0.5]])
    assert np.all(viz.magnitude(torch.zeros(3, 2, 2)) == 0)


def test_sdn_figure_is_written_as_a_png(fcn_stages, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = viz.sdn_figure(tmp_path / "stages.png", rgb, fcn_stages)
    assert_png(path, tmp_path)
