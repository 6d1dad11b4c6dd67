"""SegmentationModule: reference optimiser/schedule, metrics, divergence guard, Python API."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn

from sdnseg.engine import AtomicCheckpointIO, SegmentationModule, load_model
from sdnseg.engine.callbacks import LastCheckpoint
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.schedules import PolyWarmupFactor, poly_lr, poly_scheduler
from sdnseg.models import FCNHead, Segmentor

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


def tiny_data(**kwargs) -> SegmentationDataModule:
    args = dict(synthetic_size=32, synthetic_num_train=8, synthetic_num_val=4, batch_size=2)
    return SegmentationDataModule(**{**args, **kwargs})


def tiny_trainer(tmp_path, **kwargs) -> L.Trainer:
    args = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    return L.Trainer(**{**args, **kwargs})


class ToyBackbone(nn.Module):
    """Two strided convs exposing the Backbone contract (``channels``, ``reductions``)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.stage2 = nn.Conv2d(8, 16, 3, 2, 1)
        self.channels, self.reductions = [8, 16], [2, 4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x).relu()
        return [first, self.stage2(first).relu()]


def toy_net(num_classes: int = 6) -> Segmentor:
    return Segmentor(ToyBackbone(), FCNHead(16, num_classes, channels=8))


def test_poly_lr_closed_form():
    # lr(t) = (lr0 - eta_min)(1 - t/T)^0.9 + eta_min
    assert poly_lr(0, 100, 0.01) == pytest.approx(0.01)
    assert poly_lr(50, 100, 0.01) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert poly_lr(100, 100, 0.01) == pytest.approx(1e-4)
    assert poly_lr(150, 100, 0.01) == pytest.approx(1e-4)
    # Linear warm-up multiplies: from warmup_ratio to 1 over the first steps.
    assert poly_lr(0, 100, 0.01, warmup_steps=10, warmup_ratio=0.1) == pytest.approx(0.001)
    expected = ((0.01 - 1e-4) * 0.95**0.9 + 1e-4) * (0.1 + 0.9 * 5 / 10)
    assert poly_lr(5, 100, 0.01, warmup_steps=10, warmup_ratio=0.1) == pytest.approx(expected)


def test_poly_scheduler_steps_per_iteration_and_survives_state_dict():
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=0.01, momentum=0.9)
    scheduler = poly_scheduler(optimizer, total_steps=20, min_lr=1e-4, power=0.9)
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([poly_lr(t, 20, 0.01) for t in range(20)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    # The factor is an object, so its settings travel in the scheduler's state dict.
    state = scheduler.state_dict()
    assert state["lr_lambdas"][0]["total_steps"] == 20
    with pytest.raises(ValueError, match="total_steps"):
        PolyWarmupFactor(0, 0.01)


@pytest.mark.parametrize(
    ("arch", "optimizer", "expected"),
    [
        ("fcn_r18d8", "sgd", (0.01, 5e-4, 1e-4)),
        ("semfpn_r18_sdn", "sgd", (0.01, 5e-4, 1e-4)),
        ("segmenter_vitt16", "sgd", (0.001, 0.0, 1e-4)),
        ("fcn_r18d8", "adamw", (6e-5, 0.01, 0.0)),
    ],
)
def test_reference_optimiser_defaults_follow_the_arch(arch, optimizer, expected):
    module = SegmentationModule(arch, optimizer=optimizer, schedule_steps=10)
    settings = module.optimizer_settings
    assert (settings.lr, settings.weight_decay, settings.min_lr) == pytest.approx(expected)
    assert module.net is None  # num_classes left to the data: built at setup


def test_configure_optimizers_sgd_momentum_and_per_step_poly():
    module = SegmentationModule("fcn_r18d8", 3, TINY, schedule_steps=10, warmup_steps=2)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 5e-4
    assert scheduler["interval"] == "step" and scheduler["frequency"] == 1
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 1e-6)  # warm-up start
    adamw = SegmentationModule("fcn_r18d8", 3, TINY, optimizer="adamw", lr=1e-3, schedule_steps=5)
    assert isinstance(adamw.configure_optimizers()["optimizer"], torch.optim.AdamW)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="known models"):
        SegmentationModule("fcn_r19")
    with pytest.raises(ValueError, match="either a model name"):
        SegmentationModule()
    with pytest.raises(ValueError, match="min_lr"):
        SegmentationModule("fcn_r18d8", lr=1e-4, min_lr=1e-3)
    with pytest.raises(ValueError, match="eval_crop"):
        SegmentationModule("fcn_r18d8", eval_mode="slide")
    with pytest.raises(ValueError, match="num_classes=4 but the given net has 6"):
        SegmentationModule(net=toy_net(6), num_classes=4)


def test_validation_scores_full_resolution_masks(tmp_path):
    # Images are evaluated at 16x16 (base_size), masks stay 32x32: predictions are resized back.
    data = tiny_data(base_size=(16, 16))
    module = SegmentationModule("fcn_r18d8", model_overrides=TINY)
    (metrics,) = tiny_trainer(tmp_path).validate(module, datamodule=data, verbose=False)
    expected = {"val/loss", "val/mIoU", "val/mAcc", "val/aAcc"}
    expected |= {f"val/BF@{t}px{s}" for t in (1, 3) for s in ("", "_skip")}
    assert expected <= set(metrics)
    assert 0 <= metrics["val/mIoU"] <= 1 and math.isfinite(metrics["val/loss"])
    assert module.num_classes == 6 and module.data_info.base_size == (16, 16)


def test_slide_mode_matches_whole_when_the_window_covers_the_image(tmp_path):
    data = tiny_data()
    torch.manual_seed(0)
    whole = SegmentationModule("fcn_r18d8", 6, TINY)
    slide = SegmentationModule("fcn_r18d8", 6, TINY, eval_mode="slide", eval_crop=(32, 32),
                               eval_stride=(32, 32))  # fmt: skip
    slide.net.load_state_dict(whole.net.state_dict())
    trainer = tiny_trainer(tmp_path)
    (a,) = trainer.validate(whole, datamodule=data, verbose=False)
    (b,) = trainer.validate(slide, datamodule=data, verbose=False)
    assert a["val/mIoU"] == pytest.approx(b["val/mIoU"])


def test_bf16_mixed_precision_on_cpu(tmp_path):
    module = SegmentationModule("fcn_r18d8", model_overrides=TINY, schedule_steps=2)
    trainer = tiny_trainer(
        tmp_path,
        max_steps=2,
        precision="bf16-mixed",
        val_check_interval=2,
        check_val_every_n_epoch=None,
    )
    trainer.fit(module, datamodule=tiny_data())
    assert math.isfinite(trainer.callback_metrics["val/loss"])
    assert 0 <= trainer.callback_metrics["val/mIoU"] <= 1


class InjectNaN(L.Callback):
    """Poisons one weight before the batch of step ``step`` (a diverging run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.net.parameters()).view(-1)[0] = float("nan")


def test_divergence_stops_at_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    module = SegmentationModule("fcn_r18d8", model_overrides=TINY, schedule_steps=10)
    last = LastCheckpoint(tmp_path / "ckpt", every_n_train_steps=1)
    trainer = tiny_trainer(
        tmp_path, max_steps=10, callbacks=[last, InjectNaN(3)], plugins=[AtomicCheckpointIO()]
    )
    with pytest.raises(FloatingPointError, match=r"training loss is nan at step 3 "):
        trainer.fit(module, datamodule=tiny_data())
    checkpoint = torch.load(last.path, weights_only=True)
    assert checkpoint["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_python_api_trains_any_segmentor_and_loads_it_back(tmp_path):
    module = SegmentationModule(net=toy_net(), schedule_steps=2)
    assert module.optimizer_settings.lr == 0.01  # not a zoo model: the FCN / FPN reference values
    trainer = tiny_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data())
    path = tmp_path / "toy.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match="model given from Python"):
        load_model(path)
    predictor = load_model(path, model=toy_net())
    loaded = predictor.net.state_dict()
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(loaded[key], value)
    assert predictor.classes == tuple(f"class{i}" for i in range(6))
