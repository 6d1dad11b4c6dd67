"""CombinedLoss and its specs: the default it reproduces, the weighted sum, the errors."""

from __future__ import annotations

import pytest
import torch

from sdnseg.models import SegmentorOutput, segmentation_loss
from sdnseg.models.inverseform import InverseTransformNet
from sdnseg.models.losses import (
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    EdgeBCELoss,
    InverseFormLoss,
    build_loss,
)

CE = {"class_path": "sdnseg.models.losses.CrossEntropyLoss"}


def outputs(seed: int = 0, edge: bool = False) -> tuple[SegmentorOutput, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    aux = {"aux": torch.randn(2, 4, 4, 4, generator=generator, dtype=torch.float64)}
    if edge:
        aux["edge"] = torch.randn(2, 1, 8, 8, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 8, 8), generator=generator)
    target[1, :2] = 255
    return SegmentorOutput(logits, aux), target


def test_cross_entropy_spec_reproduces_the_default_loss():
    output, target = outputs()
    torch.testing.assert_close(build_loss([CE])(output, target), segmentation_loss(output, target))
    torch.testing.assert_close(
        build_loss([CE], aux_weight=0.0)(output, target),
        segmentation_loss(output, target, aux_weight=0.0),
    )


def test_terms_are_weighted_and_pixel_terms_also_apply_to_the_aux_head():
    output, target = outputs(1, edge=True)
    specs = [
        {**CE, "weight": 1.0},
        {
            "class_path": "sdnseg.models.losses.DiceLoss",
            "init_args": {"smooth": 1.0},
            "weight": 0.5,
        },
        {"class_path": "sdnseg.models.losses.EdgeBCELoss", "weight": 0.3},
    ]
    loss = build_loss(specs)
    ce, dice, bce = CrossEntropyLoss(), DiceLoss(smooth=1.0), EdgeBCELoss()
    aux = output.aux["aux"]
    expected = (
        ce(output.logits, target)
        + 0.4 * ce(aux, target)
        + 0.5 * (dice(output.logits, target) + 0.4 * dice(aux, target))
        + 0.3 * bce(output, target)
    )
    torch.testing.assert_close(loss(output, target), expected)
    assert build_loss([CE], ignore_index=7).terms[0].ignore_index == 7  # passed on when unset
    given = build_loss([{**CE, "init_args": {"ignore_index": 3}}], ignore_index=7)
    assert given.terms[0].ignore_index == 3


def test_unread_aux_outputs_and_bad_specs_are_named():
    output, target = outputs(2, edge=True)
    with pytest.raises(
        ValueError, match=r"no loss term reads the auxiliary output\(s\) \['edge'\]"
    ):
        build_loss([CE])(output, target)
    with pytest.raises(ValueError, match="'sdnseg.models.losses.NoSuchLoss' is not an importable"):
        build_loss([{"class_path": "sdnseg.models.losses.NoSuchLoss"}])
    with pytest.raises(ValueError, match="'no_module.Loss' is not an importable"):
        build_loss([{"class_path": "no_module.Loss"}])
    with pytest.raises(ValueError, match="a loss spec is a dict with keys"):
        build_loss([{**CE, "weigth": 2}])
    with pytest.raises(ValueError, match="at least one"):
        CombinedLoss([])


def test_missing_inverse_net_checkpoint_is_named(tmp_path):
    path = tmp_path / "nowhere" / "inverse_net.pt"
    spec = {
        "class_path": "sdnseg.models.losses.InverseFormLoss",
        "init_args": {"checkpoint": str(path)},
    }
    with pytest.raises(FileNotFoundError, match=f"inverse-net checkpoint {path} does not exist"):
        build_loss([spec])
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match=f"{other} is not an inverse-net checkpoint"):
        InverseFormLoss(str(other))
    assert InverseFormLoss(InverseTransformNet(8, (4,))).checkpoint is None
