"""``--model.losses``: specs built at fit setup, median-frequency weights from the training split,
the errors for a wrong class-weight length and a missing edge head, tiny fits through the CLI
(combined losses; the edge head + InverseForm recipe) and a MaskFormer's matching loss."""

from __future__ import annotations

import math

import pytest
import torch

from sdnseg.engine import SegmentationDataModule, SegmentationModule
from sdnseg.engine.cli import main
from sdnseg.engine.losses import training_loss
from sdnseg.models import create_model
from sdnseg.models.inverseform import InverseTransformNet, save_inverse_net
from sdnseg.models.losses import MaskFormerLoss, class_pixel_counts, median_frequency_weights

from .test_cli import last_row, only_run
from .tiny import TINY_MODEL, tiny_fit_args

CE = "sdnseg.models.losses.CrossEntropyLoss"
SMALL = {"backbone": "resnet10t", "backbone_kwargs": {}}


def test_median_frequency_weights_come_from_the_training_split():
    data = SegmentationDataModule(name="synthetic", synthetic_size=32, synthetic_num_train=6)
    net = create_model("fcn_r18d8", 6, **SMALL)
    spec = [{"class_path": CE, "init_args": {"class_weight": "median_frequency"}}]
    loss = training_loss(spec, net, "fcn_r18d8", 6, 255, 0.4, data)
    dataset = data.raw_dataset("train")
    masks = [dataset[i]["mask"] for i in range(len(dataset))]
    expected = median_frequency_weights(*class_pixel_counts(masks, 6))
    torch.testing.assert_close(loss.terms[0].class_weight, expected)
    with pytest.raises(ValueError, match="median_frequency needs the training data"):
        training_loss(spec, net, "fcn_r18d8", 6, 255, 0.4, None)


def test_wrong_class_weight_length_and_missing_edge_head_are_named():
    net = create_model("fcn_r18d8", 6, **SMALL)
    spec = [{"class_path": CE, "init_args": {"class_weight": [1.0, 2.0, 3.0]}}]
    with pytest.raises(
        ValueError, match="class_weight has 3 entries but model 'fcn_r18d8' predicts 6 classes"
    ):
        training_loss(spec, net, "fcn_r18d8", 6, 255, 0.4)
    edge = [{"class_path": CE}, {"class_path": "sdnseg.models.losses.EdgeBCELoss", "weight": 0.3}]
    with pytest.raises(
        ValueError, match=r"\['EdgeBCELoss'\] need an edge head.*'fcn_r18d8' has none"
    ):
        training_loss(edge, net, "fcn_r18d8", 6, 255, 0.4)
    with_edge = create_model("fcn_r18d8", 6, edge_head=True, **SMALL)
    assert len(training_loss(edge, with_edge, "fcn_r18d8", 6, 255, 0.4).terms) == 2


def test_fit_with_combined_losses(tmp_path):
    losses = (
        f"[{{class_path: {CE}, init_args: {{class_weight: median_frequency}}}}, "
        "{class_path: sdnseg.models.losses.LovaszSoftmaxLoss, weight: 0.5}]"
    )
    args = tiny_fit_args(tmp_path, "combined", steps=2)
    assert main([*args, "--model.losses", losses]) == 0
    assert math.isfinite(float(last_row(only_run(tmp_path), "train/loss")["train/loss"]))


def test_fit_with_inverseform(tmp_path, capsys):
    inverse_net = save_inverse_net(InverseTransformNet(16, (32, 8)), tmp_path / "inverse.pt")
    losses = (
        f"[{{class_path: {CE}}}, "
        "{class_path: sdnseg.models.losses.EdgeBCELoss, weight: 0.3}, "
        "{class_path: sdnseg.models.losses.EdgeAttentionLoss, weight: 0.1}, "
        f"{{class_path: sdnseg.models.losses.InverseFormLoss, init_args: {{checkpoint: {{path}}}}, "
        "weight: 0.3}]"
    )
    overrides = "{backbone: resnet10t, backbone_kwargs: {}, edge_head: true}"
    args = tiny_fit_args(tmp_path / "runs", "inverseform", steps=2)
    args[args.index(TINY_MODEL[3])] = overrides
    assert main([*args, "--model.losses", losses.replace("{path}", str(inverse_net))]) == 0
    run = only_run(tmp_path / "runs")
    assert math.isfinite(float(last_row(run, "train/loss")["train/loss"]))
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert any(k.startswith("net.edge_head.") for k in checkpoint["state_dict"])
    assert not any("inverse" in k or k.startswith("criterion") for k in checkpoint["state_dict"])
    missing = tmp_path / "absent.pt"
    args = tiny_fit_args(tmp_path / "runs2", "missing", steps=1)
    args[args.index(TINY_MODEL[3])] = overrides
    assert main([*args, "--model.losses", losses.replace("{path}", str(missing))]) == 1
    assert f"inverse-net checkpoint {missing} does not exist" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_a_maskformer_trains_with_its_matching_loss():
    module = SegmentationModule(arch="maskformer_efflite0", num_classes=3)
    assert isinstance(module.criterion, MaskFormerLoss)
    spec = {"class_path": "sdnseg.models.losses.MaskFormerLoss", "weight": 2.0}
    spec["init_args"] = {"dice_weight": 0.5}
    module = SegmentationModule(arch="maskformer_efflite0", num_classes=3, losses=[spec])
    weights = (module.criterion.class_weight, module.criterion.mask_weight)
    assert weights + (module.criterion.dice_weight,) == (2.0, 40.0, 1.0)
    # the fit-time rebuild of --model.losses hands a MaskFormer's specs to maskformer_loss
    rebuilt = training_loss([spec], module.net, "maskformer_efflite0", 3, 255, 0.4)
    assert isinstance(rebuilt, MaskFormerLoss) and rebuilt.mask_weight == 40.0
    with pytest.raises(ValueError, match=r"MaskFormerLoss alone .*\['CrossEntropyLoss'\]"):
        training_loss([{"class_path": CE}], module.net, "maskformer_efflite0", 3, 255, 0.4)
    batch = {"image": torch.randn(2, 3, 64, 64), "mask": torch.randint(0, 3, (2, 64, 64))}
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss) and module.net.head.query_embed.weight.grad is not None
    module.net.eval()
    with torch.no_grad():
        assert module(batch["image"]).shape == (2, 3, 64, 64)
