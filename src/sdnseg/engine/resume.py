"""Resuming ``sdnseg fit``: what a full resume restores, what it shadows, and a weights-only one.

A full resume (``--ckpt_path``, ``--resume_mode full``, the default) restores the optimiser
(learning rate, momentum, weight decay, betas) and the schedule (its length, floor, power and
warm-up are part of its state), the step, the random state and the sampler (its seed and
position): options given again on the command line for those are *shadowed* by the restored
state. :func:`shadowed_overrides` lists each one and :func:`warn_shadowed` warns about them.

``--resume_mode weights`` loads the checkpoint's weights only (:func:`load_weights`) and starts a
new run from step 0 with this command's hyper-parameters: the way to continue with a lower
learning rate after a divergence.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sdnseg.engine.checkpoint_io import check_compatible
from sdnseg.inference.checkpoint import checkpoint_weights, load_file, read_record

__all__ = [
    "RESUME_MODES",
    "SHADOWED_DATA",
    "SHADOWED_MODEL",
    "check_state_fits",
    "load_weights",
    "shadowed_overrides",
    "warn_shadowed",
]

RESUME_MODES = ("full", "weights")
# Module arguments whose effect lives in the optimiser / scheduler state a full resume restores.
SHADOWED_MODEL = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "betas",
    "min_lr",
    "poly_power",
    "warmup_steps",
    "warmup_ratio",
    "schedule_steps",
)
# Data module arguments whose effect lives in the restored sampler state.
SHADOWED_DATA = ("seed", "batch_size")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def shadowed_overrides(
    checkpoint: Mapping[str, Any],
    model_hparams: Mapping[str, Any],
    data_hparams: Mapping[str, Any] | None = None,
) -> list[str]:
    """``"--model.lr 0.5 (the checkpoint's 0.01 is used)"`` for each shadowed argument whose
    value differs from the one the checkpoint was trained with."""
    found = []
    groups = [("model", model_hparams, checkpoint.get("hyper_parameters") or {}, SHADOWED_MODEL)]
    if data_hparams is not None:
        saved = checkpoint.get("datamodule_hyper_parameters") or {}
        groups.append(("data", data_hparams, saved, SHADOWED_DATA))
    for section, now, saved, keys in groups:
        for key in keys:
            if key in saved and key in now and not _same(now[key], saved[key]):
                used = "default" if saved[key] is None else saved[key]
                found.append(f"--{section}.{key} {now[key]} (the checkpoint's {used} is used)")
    return found


def warn_shadowed(
    checkpoint: Mapping[str, Any],
    model_hparams: Mapping[str, Any],
    data_hparams: Mapping[str, Any] | None = None,
) -> list[str]:
    """Warn (``UserWarning``) about every :func:`shadowed_overrides` entry; return them."""
    found = shadowed_overrides(checkpoint, model_hparams, data_hparams)
    if found:
        warnings.warn(
            "resuming restores the optimiser, schedule and sampler state, so these options have "
            f"no effect: {'; '.join(found)}. To train on from these weights with new "
            "hyper-parameters, add --resume_mode weights",
            UserWarning,
            stacklevel=2,
        )
    return found


def check_state_fits(module: nn.Module, state: Mapping[str, Any], path: Any) -> None:
    """Raise ``ValueError`` naming ``path`` and the first tensor whose shape differs from the
    module's (PyTorch's own error is a many-line ``RuntimeError``)."""
    own = module.state_dict()
    for name, value in state.items():
        mine = own.get(name)
        if isinstance(value, torch.Tensor) and mine is not None and mine.shape != value.shape:
            raise ValueError(
                f"checkpoint {path} does not fit this model: {name} is {tuple(value.shape)} in "
                f"the file but {tuple(mine.shape)} here"
            )


def load_weights(module: Any, path: str | os.PathLike) -> None:
    """Load a checkpoint's weights into a :class:`~sdnseg.engine.SegmentationModule` (and
    nothing else: no optimiser, schedule, step or random state).

    Raises:
        FileNotFoundError, ValueError: unreadable file, another model, weights that do not fit
            or hold NaN / Inf; one line naming ``path``.
    """
    checkpoint = load_file(path)
    record = read_record(checkpoint, path)
    config = module.model_config.to_dict() if module.model_config else None
    check_compatible(record, module.arch, config, module.num_classes)
    state = checkpoint_weights(checkpoint, path)
    check_state_fits(module, state, path)
    module.load_state_dict(state, strict=False)
