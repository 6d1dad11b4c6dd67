"""An SDN neck inside segmentation_models.pytorch (SMP) models: two lines turn one into an SDN model.

>>> import segmentation_models_pytorch as smp
>>> from sdnseg.integrations.smp import add_sdn
>>> model = add_sdn(smp.Unet("resnet34", classes=19))  # Eq. 6 multi-scale; multi_scale=False: one

Every SMP model named in :data:`DECODER_INPUTS` runs ``encoder -> decoder -> segmentation_head``
in ``SegmentationModel.forward``, the encoder giving a list of features, the first being the
input image (stride 1). :func:`add_sdn` registers an :class:`SMPNeck` as ``model.sdn`` and a
forward pre-hook on ``model.decoder`` that replaces the decoder's feature list by the neck's, so
SMP's own ``forward`` (its input-shape check, the optional classification head, which keeps the
raw last feature), its ``encoder``/``decoder``/``segmentation_head`` attributes, ``encoder(x)``
(the raw features), ``freeze_encoder`` and ``predict`` are unchanged.

The neck acts on the features the decoder reads, as its ``forward`` reads them
(:data:`DECODER_INPUTS`, checked against each decoder by a gradient probe in the tests), never on
the input image (stage 0) nor on the empty stage of the ``mit_b*`` encoders:

- single-scale (Sec. 4.3, Fig. 4a): the last of them, ``F_L <- SDN(F_L, Φ(F_L))``;
- multi-scale (Eq. 6, Fig. 4b): each of them, guided by the next one the decoder reads, the last
  by ``Φ(F_L)``. For DeepLabV3+ (stride 4 and the last) this guides the stride-4 feature by the
  last one: Eq. 6 over the decoder's pyramid, not over features it never sees.

The default, ``multi_scale=None``, follows the paper: multi-scale for decoders that read several
features, single-scale for DeepLabV3 and PSPNet, which read one.

Not supported: DPT. Its encoder returns ``(features, prefix_tokens)`` of a ViT, all at one
resolution, and its ``forward`` passes both to the decoder; there is no pyramid for Eq. 6 and
no list for the neck to sit on.

Saving and loading. ``model.save_pretrained(dir)`` is SMP's own (weights with the neck's under
``sdn.*``, and ``config.json``, into which :func:`add_sdn` writes the neck's arguments as
``"_sdn"``: SMP's constructors drop underscore keys). SMP's ``from_pretrained`` rebuilds the
constructor's arguments only and would refuse the ``sdn.*`` tensors, so :func:`from_pretrained`
here is the loader: it rebuilds the SMP model (without downloading encoder weights: the file
has them), re-applies the neck from ``"_sdn"`` and loads the weights strictly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sdnseg.models.hub import hub_file, load_weights
from sdnseg.models.zoo import SDNConfig
from sdnseg.nn.sdn import MultiScaleSDN, SingleScaleSDN

__all__ = [
    "DECODER_INPUTS",
    "SMPNeck",
    "add_sdn",
    "decoder_stages",
    "from_pretrained",
    "remove_sdn",
]

# The encoder features each SMP decoder's forward reads (segmentation_models_pytorch 0.6,
# decoders/*/decoder.py): a slice of the list or the indices it takes.
DECODER_INPUTS: dict[str, slice | tuple[int, ...]] = {
    "Unet": slice(1, None),  # features[1:]
    "UnetPlusPlus": slice(1, None),
    "Linknet": slice(1, None),
    "MAnet": slice(1, None),
    "FPN": slice(-4, None),  # c2, c3, c4, c5 = features[-4:]
    "DeepLabV3": (-1,),  # features[-1]
    "PSPNet": (-1,),
    "DeepLabV3Plus": (2, -1),  # block1(features[2]), aspp(features[-1])
    "PAN": slice(2, None),  # features[2:]
    "UPerNet": slice(2, None),
    "Segformer": slice(1, None),  # features[1:], less the mit encoders' empty stage
}
UNSUPPORTED = {
    "DPT": "its ViT encoder returns (features, prefix tokens) at one resolution and its forward "
    "passes both to the decoder: no feature list for the neck to sit on",
}
SDN_JSON_KEY = "_sdn"  # in SMP's config.json; SMP's constructors ignore keys starting with "_"


def _architecture(model: nn.Module) -> str:
    """The SMP class ``model`` is (or derives from), among :data:`DECODER_INPUTS`."""
    import segmentation_models_pytorch as smp

    for name in UNSUPPORTED:
        if isinstance(model, getattr(smp, name)):
            raise ValueError(f"add_sdn does not support SMP's {name}: {UNSUPPORTED[name]}")
    for name in DECODER_INPUTS:
        if isinstance(model, getattr(smp, name)):
            return name
    raise ValueError(
        f"add_sdn takes an SMP model ({', '.join(DECODER_INPUTS)}), got {type(model).__name__}; "
        "for another SMP-style model give stages=[indices of the encoder features its decoder reads]"
    )


def decoder_stages(model: nn.Module) -> list[int]:
    """Indices of the encoder features ``model.decoder`` reads, less the input image (index 0)
    and empty stages (the ``mit_b*`` encoders' stride-2 one)."""
    channels = list(model.encoder.out_channels)
    reads = DECODER_INPUTS[_architecture(model)]
    indices = range(len(channels))
    picked = indices[reads] if isinstance(reads, slice) else [indices[i] for i in reads]
    return [i for i in picked if i > 0 and channels[i] > 0]


class SMPNeck(nn.Module):
    """SDN on some features of an encoder's list, the others passed through.

    Args:
        channels: the encoder's ``out_channels`` (every feature, the input image included).
        stages: indices of the features to diffuse, increasing (see :func:`decoder_stages`).
        multi_scale: :class:`~sdnseg.nn.MultiScaleSDN` over ``stages`` (Eq. 6), or
            :class:`~sdnseg.nn.SingleScaleSDN` on the last of them.
        sdn: widths and operator of the SDN (:class:`~sdnseg.models.SDNConfig`).

    Shape:
        a list of features -> a list of the same shapes.
    """

    def __init__(
        self, channels: Sequence[int], stages: Sequence[int], multi_scale: bool, sdn: SDNConfig
    ) -> None:
        super().__init__()
        stages = [int(s) for s in stages]
        if not stages or stages != sorted(set(stages)) or not 0 < stages[0] <= stages[-1]:
            raise ValueError(f"stages must be increasing feature indices > 0, got {stages}")
        if stages[-1] >= len(channels) or any(channels[s] == 0 for s in stages):
            raise ValueError(f"stages {stages} do not fit the encoder's channels {list(channels)}")
        self.stages = tuple(stages) if multi_scale else (stages[-1],)
        self.multi_scale = multi_scale
        neck = MultiScaleSDN if multi_scale else SingleScaleSDN
        self.sdn = neck([channels[s] for s in self.stages], **dataclasses.asdict(sdn))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        features = list(features)
        diffused = self.sdn([features[s] for s in self.stages])
        for stage, feature in zip(self.stages, diffused, strict=True):
            features[stage] = feature
        return features

    def before_decoder(self, decoder: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook of the decoder: its feature list through the neck."""
        return (self(args[0]), *args[1:])


def add_sdn(
    model: nn.Module,
    multi_scale: bool | None = None,
    stages: Sequence[int] | None = None,
    **sdn_kwargs: Any,
) -> nn.Module:
    """Put an SDN neck between the encoder and the decoder of an SMP model (in place).

    Args:
        model: an SMP model of :data:`DECODER_INPUTS` (or, with ``stages``, any model with
            ``encoder.out_channels`` and a ``decoder`` taking the encoder's feature list).
        multi_scale: Eq. 6 over the decoder's features (True), SDN on the last one (False), or
            None: multi-scale when the decoder reads several features.
        stages: the feature indices the neck acts on; None: :func:`decoder_stages`.
        **sdn_kwargs: :class:`~sdnseg.models.SDNConfig` fields: ``guidance_channels`` (Φ's
            width, default 16), ``sdc_channels`` (default 32; None: the paper's full width),
            ``operator``, ``kernel_size``, ``dilation``, ``similarity``, ``theta``, ``lam``.

    Returns:
        ``model``, whose ``model.sdn`` is the :class:`SMPNeck`; same forward contract.

    Raises:
        ValueError: an unsupported model, a model that has a neck already, or unknown SDN
            arguments.
    """
    if getattr(model, "sdn", None) is not None:
        raise ValueError(f"this {type(model).__name__} has an SDN neck already (model.sdn)")
    if not hasattr(model, "decoder") or not hasattr(
        getattr(model, "encoder", None), "out_channels"
    ):
        raise ValueError(
            f"add_sdn needs a model with encoder.out_channels and a decoder, got {type(model).__name__}"
        )
    fields = {f.name for f in dataclasses.fields(SDNConfig)}
    if unknown := sorted(set(sdn_kwargs) - fields):
        raise ValueError(f"unknown SDN arguments {unknown}; allowed: {sorted(fields)}")
    sdn = SDNConfig(**sdn_kwargs)
    stages = list(stages) if stages is not None else decoder_stages(model)
    if multi_scale is None:
        multi_scale = len(stages) > 1
    neck = SMPNeck(model.encoder.out_channels, stages, multi_scale, sdn)
    model.add_module("sdn", neck)
    neck.hook = model.decoder.register_forward_pre_hook(neck.before_decoder)
    config = getattr(model, "_hub_mixin_config", None)
    if isinstance(config, dict):  # SMP's save_pretrained writes it to config.json
        config[SDN_JSON_KEY] = {
            "multi_scale": multi_scale,
            "stages": stages,
            **dataclasses.asdict(sdn),
        }
    param = next(model.decoder.parameters(), None)
    if param is not None:
        neck.to(param.device)
    neck.train(model.training)
    return model


def remove_sdn(model: nn.Module) -> nn.Module:
    """Undo :func:`add_sdn`: the decoder reads the encoder's features again (in place)."""
    neck = getattr(model, "sdn", None)
    if not isinstance(neck, SMPNeck):
        raise ValueError(f"this {type(model).__name__} has no SDN neck (model.sdn)")
    neck.hook.remove()
    del model.sdn
    config = getattr(model, "_hub_mixin_config", None)
    if isinstance(config, dict):
        config.pop(SDN_JSON_KEY, None)
    return model


def from_pretrained(
    name_or_path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    **download_kwargs: Any,
) -> nn.Module:
    """An SMP + SDN model saved with ``save_pretrained``, from a folder or a Hub repository.

    Args:
        name_or_path: a local folder, or a Hub repository id (``owner/name``).
        map_location: device of the weights.
        **download_kwargs: for ``huggingface_hub.hf_hub_download`` (``revision``, ``token``...).

    Raises:
        FileNotFoundError: no ``config.json`` or ``model.safetensors``.
        ValueError: a config without ``"_model_class"`` or ``"_sdn"`` (then it is a plain SMP
            model: use ``smp.from_pretrained``), or tensors that do not fit.
    """
    import segmentation_models_pytorch as smp

    config_path = hub_file(name_or_path, "config.json", **download_kwargs)
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {config_path}: {err}") from None
    class_name, sdn = config.pop("_model_class", None), config.pop(SDN_JSON_KEY, None)
    if class_name not in DECODER_INPUTS:
        raise ValueError(
            f"{config_path}: '_model_class' is {class_name!r}, not one of {list(DECODER_INPUTS)}"
        )
    if not isinstance(sdn, dict):
        raise ValueError(
            f"{config_path} has no {SDN_JSON_KEY!r} entry: a plain SMP model (load it with "
            "segmentation_models_pytorch.from_pretrained), not one saved after add_sdn"
        )
    # The weights come from the file: no encoder download.
    arguments = {k: v for k, v in config.items() if not k.startswith("_")}
    model = getattr(smp, class_name)(**{**arguments, "encoder_weights": None})
    sdn = dict(sdn)
    add_sdn(model, sdn.pop("multi_scale"), sdn.pop("stages"), **sdn)
    weights = hub_file(name_or_path, "model.safetensors", **download_kwargs)
    load_weights(model, weights, map_location)
    return model.eval()
