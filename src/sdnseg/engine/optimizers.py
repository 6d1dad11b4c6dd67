"""The reference optimisers of the training recipes (mmseg ``schedule_80k/160k``).

SGD with momentum 0.9 and lr / weight decay 0.01 / 5e-4 for FCN and Semantic FPN, 0.001 / 0 for
Segmenter (its mmseg config), and for any other decoder (MaskFormer's recipe, AdamW 1e-4 with
the encoder at 0.1×, is set in its configs, ``configs/maskformer_*``); AdamW 6e-5 / 0.01 (the
common mmseg AdamW recipe). The poly
schedule's floor (mmseg ``eta_min``) is 1e-4 for SGD, 0 for AdamW. Values given explicitly win.
The encoder's learning rate is ``lr × backbone_lr_mult`` (:func:`sdnseg.engine.finetune.parameter_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sdnseg.engine import finetune

__all__ = ["OPTIMIZERS", "OptimizerSettings", "build_optimizer", "reference_settings"]

OPTIMIZERS = ("sgd", "adamw")
# (lr, weight decay) of the reference configs, by decoder.
_SGD_DEFAULTS = {"segmenter": (0.001, 0.0)}
_SGD_DEFAULT = (0.01, 5e-4)
_ADAMW_DEFAULT = (6e-5, 0.01)


@dataclass(frozen=True)
class OptimizerSettings:
    """The resolved learning rate, weight decay and poly floor of a run."""

    lr: float
    weight_decay: float
    min_lr: float


def reference_settings(
    optimizer: str,
    decoder: str | None,
    lr: float | None = None,
    weight_decay: float | None = None,
    min_lr: float | None = None,
) -> OptimizerSettings:
    """Fill what is None with the reference value for ``optimizer`` and the model's decoder.

    Raises:
        ValueError: an unknown optimizer, a non-positive lr, or ``min_lr`` outside ``[0, lr)``.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    default_lr, default_wd = (
        _ADAMW_DEFAULT if optimizer == "adamw" else _SGD_DEFAULTS.get(decoder, _SGD_DEFAULT)
    )
    settings = OptimizerSettings(
        lr=lr if lr is not None else default_lr,
        weight_decay=weight_decay if weight_decay is not None else default_wd,
        min_lr=min_lr if min_lr is not None else (1e-4 if optimizer == "sgd" else 0.0),
    )
    if not settings.lr > 0:
        raise ValueError(f"lr must be positive, got {settings.lr}")
    if not 0 <= settings.min_lr < settings.lr:
        raise ValueError(f"min_lr must be in [0, lr={settings.lr}), got {settings.min_lr}")
    return settings


def build_optimizer(
    net: nn.Module,
    optimizer: str,
    settings: OptimizerSettings,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    backbone_lr_mult: float = 1.0,
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over ``net``'s parameters, the encoder's at ``backbone_lr_mult``."""
    params = finetune.parameter_groups(net, settings.lr, backbone_lr_mult)
    if optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=settings.lr, momentum=momentum, weight_decay=settings.weight_decay
        )
    return torch.optim.AdamW(
        params, lr=settings.lr, betas=tuple(betas), weight_decay=settings.weight_decay
    )
