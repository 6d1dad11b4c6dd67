"""The SegFix network: openseg's concatenating head, shapes at any size, gradients, zoo entries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sdnseg.models import SegFixHead, SegFixNet, SegFixOutput, create_model, get_config

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


def concatenating_head(head: SegFixHead, features: list[torch.Tensor]) -> SegFixOutput:
    """openseg's SegFix_HRNet head with ``head``'s weights: levels resized to the finest and
    concatenated, then per branch conv1x1 -> BN -> ReLU -> conv1x1."""
    size = features[0].shape[-2:]
    concat = torch.cat(
        [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in features], 1
    )
    weight = torch.cat([p.weight for p in head.projections], dim=1)  # (2C, sum c_l, 1, 1)
    c = head.channels
    outputs = []
    for rows, last in [(slice(0, c), head.boundary), (slice(c, 2 * c), head.direction)]:
        norm = head.norm
        x = F.batch_norm(
            F.conv2d(concat, weight[rows]), norm.running_mean[rows], norm.running_var[rows],
            norm.weight[rows], norm.bias[rows], training=False, eps=norm.eps,
        )  # fmt: skip
        outputs.append(last(F.relu(x)))
    return SegFixOutput(*outputs)


def test_the_head_equals_openseg_s_concatenation():
    torch.manual_seed(0)
    channels = [5, 7, 11]
    head = SegFixHead(channels, channels=6).double().eval()
    with torch.no_grad():  # non-trivial BN statistics
        head.norm.running_mean.normal_()
        head.norm.running_var.uniform_(0.5, 2)
    features = [
        torch.randn(2, c, 13 // 2**i + 1, 17 // 2**i + 1).double() for i, c in enumerate(channels)
    ]
    output, reference = head(features), concatenating_head(head, features)
    assert output.boundary.shape == (2, 1, 14, 18) and output.direction.shape == (2, 8, 14, 18)
    torch.testing.assert_close(output.boundary, reference.boundary)
    torch.testing.assert_close(output.direction, reference.direction)


def test_head_gradients_in_float64():
    torch.manual_seed(0)
    head = SegFixHead([3, 4], channels=2).double().eval()
    features = [torch.randn(1, 3, 4, 5).double(), torch.randn(1, 4, 2, 3).double()]
    features = [f.requires_grad_() for f in features]

    def outputs(a, b):
        out = head([a, b])
        return out.boundary, out.direction

    assert torch.autograd.gradcheck(outputs, features)


@pytest.mark.parametrize("size", [(64, 64), (61, 83)])
def test_outputs_at_the_input_size_and_gradients_everywhere(size):
    torch.manual_seed(0)
    net = create_model("segfix_r18", 6, **TINY)
    assert isinstance(net, SegFixNet) and net.num_classes == 6 and net.size_divisor == 32
    output = net.forward_train(torch.randn(2, 3, *size))
    assert output.boundary.shape == (2, 1, *size) and output.direction.shape == (2, 8, *size)
    (output.boundary.mean() + output.direction.logsumexp(1).mean()).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    net.eval()
    with torch.no_grad():
        again = net(torch.randn(1, 3, *size))
    assert again.boundary.shape == (1, 1, *size)


def test_zoo_entries():
    r18 = get_config("segfix_r18")
    assert r18.decoder == "segfix" and r18.backbone == "resnet18" and r18.weights is None
    assert r18.backbone_kwargs == {"stem_type": "deep", "stem_width": 32}
    lite = get_config("segfix_efflite2")
    assert lite.backbone == "tf_efficientnet_lite2" and lite.weights == "efficientnet-lite2"
    net = create_model("segfix_efflite2", 11)
    assert net.backbone.channels == [24, 48, 120, 352] and net.backbone.mean == (127.5,) * 3
    assert [p.in_channels for p in net.head.projections] == [24, 48, 120, 352]
    assert net.config == lite


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"edge_head": True}, "unknown override 'edge_head'"), ({"operator": "conv"}, "has none$")],
)
def test_segfix_overrides_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_config("segfix_r18", **overrides)
