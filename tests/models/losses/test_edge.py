"""Edge targets, the edge BCE / attention terms and the InverseForm term: direct computations
and the gradient that the public code's single-channel log_softmax never gave the edge head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sdnseg.models import EdgeHead, SegmentorOutput
from sdnseg.models.inverseform import InverseTransformNet
from sdnseg.models.losses import EdgeAttentionLoss, EdgeBCELoss, InverseFormLoss, edge_targets


def halves(height: int = 8, width: int = 8) -> torch.Tensor:
    target = torch.zeros(1, height, width, dtype=torch.long)
    target[0, :, width // 2 :] = 1
    return target


def test_edge_targets_mark_a_band_around_label_changes():
    target = halves()
    edges, valid = edge_targets(target, radius=1)
    expected = torch.zeros(8, 8)
    expected[:, 3:5] = 1  # one pixel on each side of the change between columns 3 and 4
    assert torch.equal(edges[0, 0], expected) and valid.all()
    wide, _ = edge_targets(target, radius=2)
    assert wide[0, 0].sum(1).tolist() == [4.0] * 8
    target[0, :, :2] = 255  # ignored pixels are never edges nor make any
    edges, valid = edge_targets(target, radius=1)
    assert not valid[0, 0, :, :2].any() and edges[0, 0, :, :3].sum() == 0
    assert edges[0, 0, :, 3:5].sum() == 16


def test_edge_bce_is_the_class_balanced_bce():
    generator = torch.Generator().manual_seed(0)
    target = halves()
    target[0, 0] = 255
    logit = torch.randn(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    edges, valid = edge_targets(target, radius=1)
    positive = edges[valid].mean()
    weight = torch.where(edges > 0, 1 - positive, positive) * valid
    bce = F.binary_cross_entropy_with_logits(logit, edges.double(), reduction="none")
    expected = (bce * weight).sum() / valid.sum()
    output = SegmentorOutput(torch.zeros(1, 2, 8, 8), {"edge": logit})
    torch.testing.assert_close(EdgeBCELoss(radius=1)(output, target), expected)
    plain = (bce * valid).sum() / valid.sum()
    torch.testing.assert_close(EdgeBCELoss(radius=1, balanced=False)(output, target), plain)


def test_edge_attention_is_cross_entropy_on_confident_edge_pixels():
    generator = torch.Generator().manual_seed(1)
    target = halves()
    logits = torch.randn(1, 2, 8, 8, generator=generator, dtype=torch.float64)
    edge = torch.randn(1, 1, 8, 8, generator=generator, dtype=torch.float64) * 3
    chosen = edge[:, 0].sigmoid() > 0.8
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[chosen], target[chosen])
    output = SegmentorOutput(logits, {"edge": edge})
    torch.testing.assert_close(EdgeAttentionLoss()(output, target), expected)
    calm = SegmentorOutput(logits, {"edge": torch.full_like(edge, -9.0)})
    assert EdgeAttentionLoss()(calm, target) == 0


@pytest.mark.parametrize(
    "loss", [EdgeBCELoss(), EdgeAttentionLoss(), InverseFormLoss(InverseTransformNet(16, (32, 8)))]
)
def test_a_missing_edge_output_is_named(loss):
    with pytest.raises(ValueError, match=r"needs the edge head's output aux\['edge'\].*\['aux'\]"):
        loss(SegmentorOutput(torch.zeros(1, 2, 8, 8), {"aux": torch.zeros(1, 2, 8, 8)}), halves())


def test_every_edge_term_reaches_the_edge_head():
    # The public code: log_softmax over one channel is identically 0, so no gradient flows.
    logit = torch.randn(2, 1, 8, 8, requires_grad=True)
    assert torch.equal(F.log_softmax(logit, dim=1), torch.zeros_like(logit))
    torch.manual_seed(0)
    head = EdgeHead(4, channels=8).train()
    feature = torch.randn(2, 4, 16, 16)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 10:20] = 1
    net = InverseTransformNet(16, (32, 8))
    for loss in (EdgeBCELoss(), InverseFormLoss(net)):
        head.zero_grad()
        edge = F.interpolate(head([feature]), size=(32, 32), mode="bilinear")
        loss(SegmentorOutput(torch.zeros(2, 2, 32, 32), {"edge": edge}), target).backward()
        for name, parameter in head.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, (loss, name)
    assert all(p.grad is None for p in net.parameters())  # the inverse net stays frozen


def test_inverse_form_loss_keeps_its_network_out_of_the_state():
    loss = InverseFormLoss(InverseTransformNet(16, (32, 8)))
    assert loss.state_dict() == {} and list(loss.parameters()) == []
