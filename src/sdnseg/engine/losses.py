"""The training loss of a :class:`~sdnseg.engine.SegmentationModule` built from ``--model.losses``.

``losses`` is a list of specs ``{class_path, init_args, weight}``
(:func:`sdnseg.models.losses.build_loss`); None keeps the default cross-entropy + 0.4 × auxiliary.
What needs the data or the network is settled here, at ``fit`` setup, before the first step:

- ``CrossEntropyLoss(class_weight="median_frequency")`` gets SegNet's weights from the training
  split's masks (:func:`~sdnseg.models.losses.median_frequency_weights`), logged;
- a class-weight vector whose length is not the model's class count is refused, naming both;
- terms that read ``aux["edge"]`` (edge BCE, edge attention, InverseForm) are refused for a network
  without an edge head, naming the model and the override that adds one.

A SegFix network trains with :class:`~sdnseg.models.losses.SegFixLoss` alone
(:func:`segfix_loss`), a MaskFormer (decoder ``"maskformer"``: per-layer class and mask logits, no
per-pixel logits to train) with :class:`~sdnseg.models.losses.MaskFormerLoss` alone
(:func:`maskformer_loss`; :func:`training_loss` hands a MaskFormer's specs to it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from sdnseg.models.losses import (
    CombinedLoss,
    CrossEntropyLoss,
    MaskFormerLoss,
    SegFixLoss,
    build_loss,
    build_loss_term,
    class_pixel_counts,
    median_frequency_weights,
)

__all__ = ["maskformer_loss", "segfix_loss", "training_loss"]

logger = logging.getLogger(__name__)


def _train_masks(datamodule: Any):
    dataset = datamodule.raw_dataset(datamodule.train_split)
    for index in range(len(dataset)):
        yield dataset[index]["mask"]


def training_loss(
    specs: Sequence[Mapping[str, Any]],
    net: nn.Module,
    model_name: str,
    num_classes: int,
    ignore_index: int,
    aux_weight: float,
    datamodule: Any = None,
) -> CombinedLoss | MaskFormerLoss:
    """The :class:`CombinedLoss` of ``specs`` for ``net`` (see the module doc); for a MaskFormer
    (a head with ``returns_masks``) the :class:`MaskFormerLoss` of :func:`maskformer_loss`.

    Raises:
        ValueError: a bad spec, a class-weight vector of the wrong length, median-frequency
            weights without a datamodule, or an edge loss for a network without an edge head.
    """
    if getattr(getattr(net, "head", None), "returns_masks", False):
        return maskformer_loss(specs, model_name, ignore_index)
    loss = build_loss(specs, ignore_index, aux_weight)
    for term in loss.terms:
        if isinstance(term, CrossEntropyLoss) and term.needs_class_weight:
            if datamodule is None or not hasattr(datamodule, "raw_dataset"):
                raise ValueError(
                    "class_weight: median_frequency needs the training data (a "
                    "SegmentationDataModule); give the weights as a list instead"
                )
            pixels, image_pixels = class_pixel_counts(
                _train_masks(datamodule), num_classes, ignore_index
            )
            term.set_class_weight(median_frequency_weights(pixels, image_pixels))
            logger.info("median-frequency class weights: %s", term.class_weight.tolist())
        weight = getattr(term, "class_weight", None)
        if weight is not None and weight.numel() != num_classes:
            raise ValueError(
                f"{type(term).__name__} class_weight has {weight.numel()} entries but model "
                f"{model_name!r} predicts {num_classes} classes"
            )
    readers = [type(t).__name__ for t in loss.terms if "edge" in (getattr(t, "aux_keys", ()) or ())]
    if readers and getattr(net, "edge_head", None) is None:
        raise ValueError(
            f"the losses {readers} need an edge head, but model {model_name!r} has none; add one "
            "with --model.model_overrides '{edge_head: true}' (create_model(..., edge_head=True))"
        )
    return loss


def _own_loss(
    specs: Sequence[Mapping[str, Any]] | None,
    loss_class: type,
    weights: tuple[str, ...],
    ignore_index: int,
    refusal: str,
):
    """A network's own loss: ``loss_class`` with its defaults when ``specs`` is None, else the
    one ``loss_class`` spec given, its ``weight`` scaling each of its ``weights`` terms.

    Raises:
        ValueError: ``specs`` other than one ``loss_class``: ``refusal`` and the classes given.
    """
    if specs is None:
        return loss_class(ignore_index=ignore_index)
    terms = [build_loss_term(spec, ignore_index) for spec in specs]
    if len(terms) != 1 or not isinstance(terms[0][1], loss_class):
        raise ValueError(f"{refusal}, got {[type(loss).__name__ for _, loss in terms]}")
    weight, loss = terms[0]
    for name in weights:
        setattr(loss, name, getattr(loss, name) * weight)
    return loss


def segfix_loss(
    specs: Sequence[Mapping[str, Any]] | None, model_name: str, ignore_index: int
) -> SegFixLoss:
    """The loss of a SegFix network: :class:`SegFixLoss` with its defaults when ``specs`` is
    None, else the one ``SegFixLoss`` spec given (its ``weight`` scales both terms).

    Raises:
        ValueError: ``specs`` other than one SegFixLoss, naming the model and the classes given.
    """
    refusal = (
        f"model {model_name!r} is a SegFix network and trains with "
        "sdnseg.models.losses.SegFixLoss alone (its boundary_weight and direction_weight in "
        "init_args)"
    )
    weights = ("boundary_weight", "direction_weight")
    return _own_loss(specs, SegFixLoss, weights, ignore_index, refusal)


def maskformer_loss(
    specs: Sequence[Mapping[str, Any]] | None, model_name: str, ignore_index: int
) -> MaskFormerLoss:
    """The loss of a MaskFormer: :class:`MaskFormerLoss` with its defaults when ``specs`` is
    None, else the one ``MaskFormerLoss`` spec given (its ``weight`` scales all three terms).

    Raises:
        ValueError: ``specs`` other than one MaskFormerLoss, naming the model and the classes given.
    """
    refusal = (
        f"model {model_name!r} is a MaskFormer and trains with "
        "sdnseg.models.losses.MaskFormerLoss alone (its class_weight, mask_weight and "
        "dice_weight in init_args)"
    )
    weights = ("class_weight", "mask_weight", "dice_weight")
    return _own_loss(specs, MaskFormerLoss, weights, ignore_index, refusal)
