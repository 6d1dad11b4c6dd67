"""SDN feature capture, its display reductions and the two figures, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import sdnseg
from sdnseg.nn.functional import neighbour_similarity, semantic_difference_conv2d
from sdnseg.viz import sdn_features as viz

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}, "sdc_channels": 8, "guidance_channels": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return sdnseg.create_model(name, 3, **{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def fcn() -> nn.Module:
    net = tiny("fcn_r18d8_sdn")
    with torch.no_grad():  # a λ away from its initial 1, as after training
        net.neck.sdn.op.raw_lam.fill_(-1.0)
    return net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))


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


def _assert_png(path, folder) -> None:
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_figures_are_written_as_pngs(fcn, fcn_stages, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    path = viz.sdn_figure(tmp_path / "stages.png", rgb, fcn_stages)
    _assert_png(path, tmp_path)
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
    _assert_png(result.path, tmp_path)
    assert result.names == ["A1", "A2", "B"] and result.labels == [0, 0, 1]
    assert set(result.values) == {"conv", "CDC", "SDC"}
    assert all(len(v) == 3 and min(v) >= 0 for v in result.values.values())
    with pytest.raises(ValueError, match="outside"):
        viz.operator_response_figure(tmp_path / "x.png", rgb, [(40, 0)], guidance=probs)
