"""A weighted sum of losses, and building it from plain specs (YAML).

Two kinds of terms: *pixel losses* ``loss(logits, target)`` (cross-entropy, Dice, ...), applied to
the decode head's logits and, weighted by ``aux_weight``, to the auxiliary head's
(``aux["aux"]``), as :func:`~sdnseg.models.segmentation_loss` does for the default
cross-entropy; and *output losses*, which declare the auxiliary outputs they read in
``aux_keys`` (the edge terms read ``aux["edge"]``) and are called ``loss(outputs, target)`` once.

A spec is a dict ``{"class_path": "sdnseg.models.losses.DiceLoss", "init_args": {...},
"weight": 0.5}``, the form LightningCLI uses for classes; ``ignore_index`` is passed to every class
that takes one and was not given one.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sdnseg.models.segmentor import SegmentorOutput

SPEC_KEYS = ("class_path", "init_args", "weight")


def is_output_loss(loss: nn.Module) -> bool:
    """Whether ``loss`` reads the whole :class:`SegmentorOutput` (it declares ``aux_keys``)."""
    return getattr(loss, "aux_keys", None) is not None


class CombinedLoss(nn.Module):
    """``Σ weight · term`` over ``terms``, each pixel term also on the auxiliary logits.

    Args:
        terms: (weight, loss module) pairs.
        aux_weight: weight of the pixel terms on ``aux["aux"]`` (0.4 in the FCN configs).

    Raises (in forward):
        ValueError: the outputs hold an auxiliary output no term reads (e.g. an edge head without
            an edge loss), naming it.

    Shape:
        a :class:`SegmentorOutput` (or logits (N, C, H, W)), target (N, H, W) -> scalar
    """

    def __init__(self, terms: Iterable[tuple[float, nn.Module]], aux_weight: float = 0.4) -> None:
        super().__init__()
        terms = list(terms)
        if not terms:
            raise ValueError("CombinedLoss needs at least one (weight, loss) term")
        for weight, loss in terms:
            if not isinstance(loss, nn.Module) or not isinstance(weight, (int, float)):
                raise ValueError(
                    f"a term is a (weight, nn.Module) pair, got ({weight!r}, {loss!r})"
                )
        self.weights = [float(weight) for weight, _ in terms]
        self.terms = nn.ModuleList(loss for _, loss in terms)
        self.aux_weight = aux_weight

    @property
    def aux_keys(self) -> set[str]:
        """The auxiliary outputs the terms read, ``"aux"`` (the auxiliary head) always."""
        keys = {"aux"}
        for loss in self.terms:
            keys |= set(getattr(loss, "aux_keys", None) or ())
        return keys

    def forward(
        self, outputs: SegmentorOutput | torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = SegmentorOutput(outputs)
        unknown = set(outputs.aux) - self.aux_keys
        if unknown:
            raise ValueError(
                f"no loss term reads the auxiliary output(s) {sorted(unknown)}; the terms "
                f"{[type(t).__name__ for t in self.terms]} read {sorted(self.aux_keys)}"
            )
        total = outputs.logits.new_zeros(())
        for weight, loss in zip(self.weights, self.terms, strict=True):
            if not weight:
                continue
            if is_output_loss(loss):
                total = total + weight * loss(outputs, target)
                continue
            total = total + weight * loss(outputs.logits, target)
            if "aux" in outputs.aux and self.aux_weight:
                total = total + weight * self.aux_weight * loss(outputs.aux["aux"], target)
        return total


def import_class(path: str) -> type:
    """The class at ``"package.module.Class"``, with an error naming ``path`` if there is none."""
    module_name, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name, None) if module_name else None
    except ModuleNotFoundError:
        cls = None
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(
            f"loss class_path {path!r} is not an importable nn.Module class, e.g. "
            "'sdnseg.models.losses.DiceLoss'"
        )
    return cls


def build_loss_term(spec: Mapping[str, Any], ignore_index: int = 255) -> tuple[float, nn.Module]:
    """A (weight, module) pair from ``{"class_path", "init_args", "weight"}`` (weight 1 if unset)."""
    if not isinstance(spec, Mapping) or "class_path" not in spec or set(spec) - set(SPEC_KEYS):
        raise ValueError(
            f"a loss spec is a dict with keys {SPEC_KEYS} (class_path required), got {spec!r}"
        )
    cls = import_class(spec["class_path"])
    init_args = dict(spec.get("init_args") or {})
    if "ignore_index" in inspect.signature(cls).parameters:
        init_args.setdefault("ignore_index", ignore_index)
    return float(spec.get("weight", 1.0)), cls(**init_args)


def build_loss(
    specs: Sequence[Mapping[str, Any]], ignore_index: int = 255, aux_weight: float = 0.4
) -> CombinedLoss:
    """A :class:`CombinedLoss` from a list of specs (see the module doc)."""
    return CombinedLoss([build_loss_term(spec, ignore_index) for spec in specs], aux_weight)
