"""Segmentation models: a timm backbone, an optional SDN neck and a decode head; the SegFix
boundary-refinement network beside them."""

from sdnseg.models.backbone import Backbone
from sdnseg.models.heads import FPN, EdgeHead, FCNHead, SegmenterMaskHead, SemanticFPNHead
from sdnseg.models.losses import cross_entropy, segmentation_loss
from sdnseg.models.segfix import SegFixHead, SegFixNet, SegFixOutput
from sdnseg.models.segmentor import Segmentor, SegmentorOutput
from sdnseg.models.zoo import (
    MODELS,
    ModelConfig,
    SDNConfig,
    build_model,
    create_model,
    get_config,
    input_normalization,
    list_models,
)

__all__ = [
    "FPN",
    "MODELS",
    "Backbone",
    "EdgeHead",
    "FCNHead",
    "ModelConfig",
    "SDNConfig",
    "SegFixHead",
    "SegFixNet",
    "SegFixOutput",
    "SegmenterMaskHead",
    "Segmentor",
    "SegmentorOutput",
    "SemanticFPNHead",
    "build_model",
    "create_model",
    "cross_entropy",
    "get_config",
    "input_normalization",
    "list_models",
    "segmentation_loss",
]
