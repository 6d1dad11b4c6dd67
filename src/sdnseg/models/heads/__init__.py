"""Decode heads: a list of backbone (or neck) features -> logits at the head's own resolution."""

from sdnseg.models.heads.edge import EdgeHead
from sdnseg.models.heads.fcn import Classifier, FCNHead
from sdnseg.models.heads.fpn import FPN, SemanticFPNHead
from sdnseg.models.heads.maskformer import MaskFormerHead, semantic_inference
from sdnseg.models.heads.ocr import ObjectContext, OCRHead, spatial_gather
from sdnseg.models.heads.pixel_decoder import PixelDecoder
from sdnseg.models.heads.segmenter import SegmenterMaskHead

__all__ = [
    "FPN",
    "Classifier",
    "EdgeHead",
    "FCNHead",
    "MaskFormerHead",
    "OCRHead",
    "ObjectContext",
    "PixelDecoder",
    "SegmenterMaskHead",
    "SemanticFPNHead",
    "semantic_inference",
    "spatial_gather",
]
