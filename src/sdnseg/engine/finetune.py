"""Fine-tuning a pretrained encoder: its own learning rate, frozen BN, a frozen first phase.

The conventions of mmsegmentation / detectron2 fine-tuning recipes:

* :func:`parameter_groups`: the encoder's parameters in a group whose learning rate is the base
  rate times ``backbone_lr_mult`` (mmengine ``paramwise_cfg=dict(custom_keys={"backbone":
  dict(lr_mult=...)})``); the group carries ``lr_mult``, which
  :func:`~sdnseg.engine.schedules.poly_scheduler` also applies to the poly floor ``min_lr``, so the
  encoder's rate keeps its ratio to the rest over the whole schedule.
* :class:`EncoderFineTuning` (a Lightning callback): ``batchnorm="frozen"`` keeps every BN layer of
  the encoder in eval mode with its affine parameters fixed (detectron2's ``FrozenBN``; the
  statistics of the ImageNet images are kept, useful with the small batches of CPU training);
  ``freeze_epochs=N`` keeps the whole encoder fixed (no gradient, BN in eval mode) for the first N
  epochs, so the randomly initialised decoder settles before it sends large gradients into the
  pretrained weights. Synchronised BN across GPUs is Lightning's ``--trainer.sync_batchnorm``,
  which ``sdnseg fit`` turns on by itself under multi-GPU DDP.

The layers are not replaced (no ``FrozenBatchNorm2d`` swap), so the state dict keeps its keys and
a checkpoint loads into the plain zoo model.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BATCHNORM_MODES", "EncoderFineTuning", "parameter_groups", "set_encoder_frozen"]

logger = logging.getLogger(__name__)

BATCHNORM_MODES = ("train", "frozen")


def _encoder(net: nn.Module) -> nn.Module:
    encoder = getattr(net, "backbone", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"{type(net).__name__} has no .backbone module to fine-tune")
    return encoder


def parameter_groups(
    net: nn.Module, lr: float, backbone_lr_mult: float = 1.0
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: ``net.backbone``'s at ``lr * backbone_lr_mult``, the rest at
    ``lr``. Every parameter is included (a frozen one gets no gradient, so the optimiser skips it
    until it is unfrozen); each group has an ``lr_mult`` key for the schedule.

    Raises:
        ValueError: ``backbone_lr_mult`` is not positive.
    """
    if backbone_lr_mult <= 0:
        raise ValueError(f"backbone_lr_mult must be positive, got {backbone_lr_mult}")
    encoder = {id(p) for p in _encoder(net).parameters()} if backbone_lr_mult != 1 else set()
    inside = [p for p in net.parameters() if id(p) in encoder]
    outside = [p for p in net.parameters() if id(p) not in encoder]
    groups = [{"params": outside, "lr": lr, "lr_mult": 1.0}]
    if inside:
        groups.append({"params": inside, "lr": lr * backbone_lr_mult, "lr_mult": backbone_lr_mult})
    return groups


def _batchnorms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def set_encoder_frozen(net: nn.Module, frozen: bool, batchnorm: str = "train") -> None:
    """Freeze (no gradient, BN in eval mode) or unfreeze ``net.backbone``; with
    ``batchnorm="frozen"`` its BN layers stay frozen either way. Unfrozen, the encoder takes the
    mode of ``net``. Call again after ``net.train()``, which puts BN layers back in training
    mode."""
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
    encoder = _encoder(net)
    for param in encoder.parameters():
        param.requires_grad_(not frozen)
    # Unfreezing restores the net's own mode: Lightning keeps a module's eval mode across
    # validation, so a frozen encoder would otherwise stay in eval mode for good.
    encoder.train(net.training and not frozen)
    if frozen or batchnorm == "frozen":
        for bn in _batchnorms(encoder):
            bn.eval()
            for param in bn.parameters():
                param.requires_grad_(False)


class EncoderFineTuning(L.Callback):
    """Frozen encoder for the first ``freeze_epochs`` epochs, and/or frozen encoder BN.

    In a config::

        trainer:
          callbacks:
            - class_path: sdnseg.engine.finetune.EncoderFineTuning
              init_args: {freeze_epochs: 1, batchnorm: frozen}

    Args:
        freeze_epochs: epochs (from 0) during which the encoder gets no update.
        batchnorm: ``"train"`` (BN layers learn and update their statistics) or ``"frozen"``.
    """

    def __init__(
        self, freeze_epochs: int = 0, batchnorm: Literal["train", "frozen"] = "train"
    ) -> None:
        if freeze_epochs < 0:
            raise ValueError(f"freeze_epochs must be >= 0, got {freeze_epochs}")
        if batchnorm not in BATCHNORM_MODES:
            raise ValueError(f"batchnorm must be one of {BATCHNORM_MODES}, got {batchnorm!r}")
        self.freeze_epochs, self.batchnorm = freeze_epochs, batchnorm

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        frozen = trainer.current_epoch < self.freeze_epochs
        set_encoder_frozen(pl_module.net, frozen, self.batchnorm)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.freeze_epochs and self.freeze_epochs:
            logger.info("epoch %d: the encoder is unfrozen", trainer.current_epoch)
        self._apply(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning puts the module back in training mode after validation, BN layers included.
        if trainer.training:
            self._apply(trainer, pl_module)
