"""Fine-tuning conventions: encoder learning-rate multiplier, frozen BN, a frozen first epoch."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn

from sdnseg.engine import SegmentationModule
from sdnseg.engine.finetune import EncoderFineTuning, parameter_groups, set_encoder_frozen
from sdnseg.engine.schedules import poly_lr, poly_scheduler
from sdnseg.models import FCNHead, Segmentor

from .test_module import tiny_data, tiny_trainer


class BNBackbone(nn.Module):
    """Two strided conv-BN stages exposing the Backbone contract."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.channels, self.reductions = [8, 16], [2, 4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x)
        return [first, self.stage2(first)]


def bn_net(num_classes: int = 6) -> Segmentor:
    return Segmentor(BNBackbone(), FCNHead(16, num_classes, channels=8))


def test_parameter_groups_put_the_encoder_at_its_multiplier():
    net = bn_net()
    groups = parameter_groups(net, 0.01, backbone_lr_mult=0.1)
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.001])
    assert [g["lr_mult"] for g in groups] == [1.0, 0.1]
    encoder = {id(p) for p in net.backbone.parameters()}
    assert {id(p) for p in groups[1]["params"]} == encoder
    assert not encoder & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    # Multiplier 1: one group holding everything.
    (single,) = parameter_groups(net, 0.01)
    assert len(single["params"]) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="backbone_lr_mult must be positive, got 0"):
        parameter_groups(net, 0.01, backbone_lr_mult=0)
    with pytest.raises(ValueError, match="Linear has no .backbone"):
        parameter_groups(nn.Linear(2, 2), 0.01, backbone_lr_mult=0.5)


def test_poly_floor_keeps_the_encoders_ratio():
    net = bn_net()
    optimizer = torch.optim.SGD(parameter_groups(net, 0.01, backbone_lr_mult=0.1), lr=0.01)
    scheduler = poly_scheduler(
        optimizer, total_steps=20, min_lr=1e-4, warmup_steps=3, warmup_ratio=0.1
    )
    for step in range(25):
        decoder, encoder = (g["lr"] for g in optimizer.param_groups)
        assert decoder == pytest.approx(poly_lr(step, 20, 0.01, 1e-4, 0.9, 3, 0.1))
        assert encoder == pytest.approx(poly_lr(step, 20, 0.001, 1e-5, 0.9, 3, 0.1))
        assert encoder / decoder == pytest.approx(0.1)
        optimizer.step()
        scheduler.step()
    assert encoder == pytest.approx(1e-5)


def _bns(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d)]


def test_set_encoder_frozen_and_frozen_batchnorm():
    net = bn_net().train()
    set_encoder_frozen(net, True)
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    assert not any(bn.training for bn in _bns(net))
    stats = [bn.running_mean.clone() for bn in _bns(net)]
    net(torch.randn(2, 3, 16, 16))
    assert all(torch.equal(s, bn.running_mean) for s, bn in zip(stats, _bns(net), strict=True))

    net.train()
    set_encoder_frozen(net, False)
    assert all(p.requires_grad for p in net.backbone.parameters())
    assert all(bn.training for bn in _bns(net))

    set_encoder_frozen(net, False, batchnorm="frozen")
    convs = [m.weight for m in net.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.requires_grad for w in convs)
    assert not any(p.requires_grad for bn in _bns(net) for p in bn.parameters())
    assert not any(bn.training for bn in _bns(net))
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        set_encoder_frozen(net, False, batchnorm="sync")


class StateRecorder(L.Callback):
    """The encoder's and the head's state at every training epoch's end."""

    def __init__(self) -> None:
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.head: list[dict[str, torch.Tensor]] = []

    def _copy(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self.backbone.append(self._copy(pl_module.net.backbone))
        self.head.append(self._copy(pl_module.net.head))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.on_train_start(trainer, pl_module)


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_encoder_frozen_for_the_first_epoch_then_trained(tmp_path):
    torch.manual_seed(0)
    recorder = StateRecorder()
    module = SegmentationModule(net=bn_net(), schedule_steps=8, warmup_steps=0)
    # 8 images, batch 2: 4 steps per epoch; validation after epoch 0 must not unfreeze BN.
    trainer = tiny_trainer(
        tmp_path, max_steps=8, callbacks=[EncoderFineTuning(freeze_epochs=1), recorder]
    )
    trainer.fit(module, datamodule=tiny_data())
    start, epoch0, epoch1 = recorder.backbone
    assert _changed(start, epoch0) == set()  # weights and BN statistics alike
    assert _changed(recorder.head[0], recorder.head[1])
    changed = _changed(epoch0, epoch1)
    assert "stage1.0.weight" in changed and "stage1.1.running_mean" in changed


def test_frozen_batchnorm_keeps_the_statistics_while_the_encoder_learns(tmp_path):
    torch.manual_seed(0)
    recorder = StateRecorder()
    module = SegmentationModule(net=bn_net(), schedule_steps=4, warmup_steps=0)
    trainer = tiny_trainer(
        tmp_path, max_steps=4, callbacks=[EncoderFineTuning(batchnorm="frozen"), recorder]
    )
    trainer.fit(module, datamodule=tiny_data())
    changed = _changed(*recorder.backbone)
    assert {"stage1.0.weight", "stage2.0.weight"} <= changed
    assert not any(".1." in key for key in changed)  # BN: affine and statistics untouched


def test_callback_arguments_are_checked():
    with pytest.raises(ValueError, match="freeze_epochs must be >= 0, got -1"):
        EncoderFineTuning(freeze_epochs=-1)
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        EncoderFineTuning(batchnorm="sync")


def test_datamodule_normalises_as_the_encoder_weights_expect():
    data = tiny_data()
    data.trainer = SimpleNamespace(lightning_module=SegmentationModule("semfpn_efflite0", 3))
    assert data.mean == data.std == (127.5, 127.5, 127.5)
    data.trainer = SimpleNamespace(lightning_module=SegmentationModule("fcn_r18d8", 3))
    assert data.mean == pytest.approx((123.675, 116.28, 103.53))
    given = tiny_data(mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0))
    given.trainer = SimpleNamespace(lightning_module=SegmentationModule("semfpn_efflite0", 3))
    assert given.mean == (1.0, 2.0, 3.0) and given.std == (4.0, 5.0, 6.0)
