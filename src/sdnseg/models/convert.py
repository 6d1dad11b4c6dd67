"""Backbone weights from other codebases' checkpoints: torchvision and mmsegmentation ResNets.

Our ResNet backbones are timm ResNets (``features_only``), whose keys are ``conv1``, ``bn1``,
``layer{1-4}.{i}.conv{1-3}`` / ``bn{1-3}`` / ``downsample.{0,1}`` and, for the deep stem of
ResNetV1c (timm ``resnet50c``, or ``resnet18`` with ``stem_type="deep"``), ``conv1.{0,1,3,4,6}``
(conv, BN, conv, BN, conv) and then ``bn1``.

* torchvision ResNets use timm's plain-stem names exactly (``conv1`` is the one 7×7 conv) plus the
  classifier ``fc``: :func:`convert_torchvision_resnet` drops ``fc``. They fit a plain-stem
  backbone only (``create_model(..., backbone="resnet50")``; for the R18 models also
  ``backbone_kwargs={}``, since those ask timm for the deep stem).
* mmcv/mmseg's ``ResNetV1c`` (the ``open-mmlab://resnet50_v1c`` ImageNet weights of Table 1)
  names its deep stem ``stem.{0,1,3,4,6,7}`` (conv, BN, conv, BN, conv, BN) and otherwise uses the
  timm names: :func:`convert_mmseg_resnet_v1c` maps ``stem.7`` to ``bn1`` and ``stem.{i}`` to
  ``conv1.{i}``, and keeps only the ``backbone.`` part of a whole-segmentor checkpoint.

A checkpoint whose stem is of the other kind than the backbone's (plain into deep, or deep into
plain) loads everything but the stem: :func:`load_backbone_checkpoint` leaves the backbone's stem
keys missing and reports the checkpoint's as unexpected, rather than loading the 64-channel
``bn1``, which normalises a different conv in the two stems.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

FORMATS = ("auto", "timm", "torchvision", "mmseg")
_STEM = ("conv1.", "bn1.")
_MMSEG_STEM = re.compile(r"^stem\.(\d+)\.(.+)$")
_MMSEG_STEM_TO_TIMM = {
    "0": "conv1.0",
    "1": "conv1.1",
    "3": "conv1.3",
    "4": "conv1.4",
    "6": "conv1.6",
    "7": "bn1",
}
_PREFIX_DEPTH = 3  # how many leading dotted names may wrap the backbone's keys


def _is_resnet(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("layer1.") for k in state)


def convert_torchvision_resnet(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict (``torchvision.models.resnet50().state_dict()``) in the key
    names of a timm ResNet: the same names, without the classifier ``fc``.

    torchvision's stem is one 7×7 conv (``conv1``, ``bn1``): the weights fit a plain-stem timm
    ResNet (``resnet18``, ``resnet50``), not the deep stem of ``resnet50c`` / ResNetV1c.

    Raises:
        ValueError: the keys are not those of a torchvision ResNet.
    """
    if "conv1.weight" not in state_dict or not _is_resnet(state_dict):
        raise ValueError(
            "not a torchvision ResNet state dict: expected 'conv1.weight' and 'layer1.*' keys, "
            f"got {_preview(state_dict)}"
        )
    return {k: v for k, v in state_dict.items() if not k.startswith("fc.")}


def convert_mmseg_resnet_v1c(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An mmcv/mmseg ``ResNetV1c`` state dict in the key names of timm's deep-stem ResNet.

    ``stem.{0,1,3,4,6}.*`` -> ``conv1.{0,1,3,4,6}.*``, ``stem.7.*`` -> ``bn1.*``, ``layer*`` kept,
    classifier ``fc.*`` dropped. A whole-segmentor checkpoint (keys ``backbone.*``,
    ``decode_head.*``, ...) is reduced to its ``backbone.`` keys first.

    Raises:
        ValueError: there are no ``stem.*`` / ``layer1.*`` keys, or a stem index is not one of
            ResNetV1c's.
    """
    if any(k.startswith("backbone.") for k in state_dict):
        state_dict = {
            k.removeprefix("backbone."): v
            for k, v in state_dict.items()
            if k.startswith("backbone.")
        }
    if not any(k.startswith("stem.") for k in state_dict) or not _is_resnet(state_dict):
        raise ValueError(
            "not an mmseg ResNetV1c state dict: expected 'stem.*' and 'layer1.*' keys, "
            f"got {_preview(state_dict)}"
        )
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        match = _MMSEG_STEM.match(key)
        if match is not None:
            index, rest = match.groups()
            if index not in _MMSEG_STEM_TO_TIMM:
                raise ValueError(
                    f"unexpected mmseg stem key {key!r}: ResNetV1c's stem has "
                    f"stem.{{{','.join(_MMSEG_STEM_TO_TIMM)}}}"
                )
            key = f"{_MMSEG_STEM_TO_TIMM[index]}.{rest}"
        converted[key] = value
    return converted


_CONVERTERS = {
    "timm": dict,
    "torchvision": convert_torchvision_resnet,
    "mmseg": convert_mmseg_resnet_v1c,
}


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The key layout of a ResNet checkpoint, behind any ``module.`` / ``backbone.`` prefix:

    ``"mmseg"`` for ``stem.<i>.*`` and ``layer1.*`` keys (ResNetV1c); ``"torchvision"`` for a
    ``conv1.weight`` and ``layer1.*`` keys (timm's plain-stem ResNets share this layout, and its
    conversion keeps them as they are); else ``"timm"`` (keys used as they are).
    """
    found: dict[str, set[str]] = {}  # prefix -> the marks of the keys under it
    for key, value in state_dict.items():
        parts = key.split(".")
        for start in range(min(_PREFIX_DEPTH, len(parts) - 1) + 1):
            prefix, rest = ".".join(parts[:start]), parts[start:]
            marks = found.setdefault(prefix, set())
            if rest[0] == "layer1":
                marks.add("layer1")
            elif rest[0] == "stem" and len(rest) > 2 and rest[1].isdigit():
                marks.add("stem")
            elif rest == ["conv1", "weight"] and value.dim() == 4:
                marks.add("conv1")
    if any({"stem", "layer1"} <= marks for marks in found.values()):
        return "mmseg"
    if any({"conv1", "layer1"} <= marks for marks in found.values()):
        return "torchvision"
    return "timm"


def load_backbone_checkpoint(
    backbone: nn.Module, path: str | os.PathLike, format: str = "auto"
) -> tuple[list[str], list[str]]:
    """Load a local checkpoint into a :class:`~sdnseg.models.Backbone`, non-strictly.

    Reads a plain state dict or one wrapped under ``"state_dict"`` / ``"model"``, converts it from
    ``format`` to timm's key names, finds the key prefix (none, ``module.``, ``backbone.``,
    ``backbone.body.``, ... of a wrapped model) under which it matches the backbone best, resizes a
    ViT position embedding to the backbone's grid, and loads it with ``strict=False``. Weights of
    another shape are not loaded (they count as missing); a stem of the other kind (see the module
    docstring) is not loaded either. Keys outside the chosen prefix (a decode head, an optimiser)
    are ignored and only counted in the log.

    Args:
        backbone: a :class:`~sdnseg.models.Backbone` (its timm model ``backbone.body`` is loaded),
            or a timm model itself.
        path: the checkpoint file (``torch.load`` with ``weights_only=True``).
        format: ``"auto"`` (from the keys, see :func:`detect_format`), ``"timm"`` (as is; also an
            sdnseg checkpoint), ``"torchvision"`` (:func:`convert_torchvision_resnet`, plain
            stem) or ``"mmseg"`` (:func:`convert_mmseg_resnet_v1c`).

    Returns:
        ``(missing_keys, unexpected_keys)`` in the backbone's key names, also logged as warnings.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unknown ``format``; the file cannot be read as a weights-only state dict; it is
            not in the given format; or not one of its weights fits the backbone.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    path = Path(path)
    state = _read_state_dict(path)
    target = getattr(backbone, "body", backbone)
    own = target.state_dict()
    fmt = detect_format(state) if format == "auto" else format
    try:
        state, ignored = _convert_with_prefix(state, own, _CONVERTERS[fmt])
    except ValueError as err:
        raise ValueError(f"{path}: cannot read it as a {fmt} checkpoint: {err}") from err
    state, stem_unexpected = _drop_other_stem(state, own, path)
    state, skipped = _fit_shapes(state, own, target)
    if not any(k in own for k in state):
        raise ValueError(
            f"{path}: no weight fits the backbone (read as format {fmt!r}); checkpoint keys "
            f"{_preview(state)}, backbone keys {_preview(own)}"
        )
    result = target.load_state_dict(state, strict=False)
    missing = list(result.missing_keys)
    unexpected = list(result.unexpected_keys) + stem_unexpected
    logger.info(
        "%s: loaded %d of %d backbone tensors (format %s)",
        path,
        len(own) - len(missing),
        len(own),
        fmt,
    )
    if ignored:
        logger.info("%s: ignored %d keys outside the backbone (classifier, heads)", path, ignored)
    if skipped:
        logger.warning("%s: shape mismatch, not loaded: %s", path, skipped)
    if missing:
        logger.warning("%s: missing keys in checkpoint: %s", path, missing)
    if unexpected:
        logger.warning("%s: unexpected keys in checkpoint: %s", path, unexpected)
    return missing, unexpected


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path}: cannot be read by torch.load(weights_only=True): {err}\nIf the file holds "
            "more than tensors (e.g. an mmengine message hub) and you trust it, re-save its "
            "weights: torch.save(torch.load(path, weights_only=False)['state_dict'], new_path)"
        ) from err
    while isinstance(state, dict):
        inner = state.get("state_dict", state.get("model"))
        if not isinstance(inner, dict):
            break
        state = inner
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{path}: not a state dict (got {type(state).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _convert_with_prefix(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], convert
) -> tuple[dict[str, torch.Tensor], int]:
    """Convert the keys under the prefix that matches ``own`` best; also the count of keys left out.

    Candidates strip a leading prefix of up to ``_PREFIX_DEPTH`` dotted names from the checkpoint
    (``module.``, ``backbone.``, ``backbone.body.``) and add one of the backbone's own
    (``model.`` of timm's ``FeatureGetterNet``). Ties go to the shorter prefix.
    """
    strips = {""}
    for key in state:
        parts = key.split(".")
        strips.update(
            ".".join(parts[:i]) + "." for i in range(1, min(_PREFIX_DEPTH, len(parts) - 1) + 1)
        )
    adds = {""} | {k.split(".")[0] + "." for k in own if "." in k}
    best, best_hits, best_ignored, first_error = None, -1, 0, None
    for strip in sorted(strips, key=lambda p: (len(p), p)):
        subset = {k.removeprefix(strip): v for k, v in state.items() if k.startswith(strip)}
        try:
            converted = convert(subset)
        except ValueError as err:
            first_error = first_error or err
            continue
        for add in sorted(adds, key=lambda p: (len(p), p)):
            candidate = {add + k: v for k, v in converted.items()}
            hits = sum(k in own for k in candidate)
            if hits > best_hits:
                best, best_hits, best_ignored = candidate, hits, len(state) - len(converted)
    if best is None:
        raise first_error
    return best, best_ignored


def _stem_kind(keys) -> str | None:
    keys = set(keys)
    if "conv1.0.weight" in keys:
        return "deep"
    if "conv1.weight" in keys:
        return "plain"
    return None


def _drop_other_stem(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Leave out a ResNet stem of the other kind than the backbone's (its keys are returned)."""
    mine, theirs = _stem_kind(own), _stem_kind(state)
    if mine is None or theirs is None or mine == theirs:
        return state, []
    stem = [k for k in state if k.startswith(_STEM)]
    logger.warning(
        "%s: the checkpoint has a %s stem, the backbone a %s one: the stem is not loaded "
        "(a torchvision ResNet fits backbone='resnet50' / 'resnet18' with a plain stem)",
        path,
        theirs,
        mine,
    )
    return {k: v for k, v in state.items() if k not in stem}, stem


def _fit_shapes(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], target: nn.Module
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Resize a ViT position embedding to the backbone's grid; leave out other mismatched shapes."""
    from timm.layers import resample_abs_pos_embed

    fitted, skipped = {}, []
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            vit = getattr(target, "model", None)
            if key.endswith("pos_embed") and hasattr(vit, "patch_embed"):
                value = resample_abs_pos_embed(
                    value, list(vit.patch_embed.grid_size), num_prefix_tokens=vit.num_prefix_tokens
                )
            else:
                skipped.append(key)
                continue
        fitted[key] = value
    return fitted, skipped


def _preview(state: Mapping[str, object], count: int = 5) -> str:
    keys = list(state)
    more = f", ... ({len(keys)} in all)" if len(keys) > count else ""
    return f"[{', '.join(keys[:count])}{more}]" if keys else "[] (empty)"
