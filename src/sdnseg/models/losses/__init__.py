"""Segmentation losses, each a small ``nn.Module`` (or the functional cross-entropy), and
:class:`CombinedLoss`, their weighted sum, built from YAML specs by :func:`build_loss`.

| loss | reference checked against in the tests |
|---|---|
| :func:`cross_entropy`, :func:`segmentation_loss` (the default: CE + 0.4 aux) | ``F.cross_entropy`` |
| :class:`CrossEntropyLoss` (class weights; :func:`median_frequency_weights`) | ``F.cross_entropy`` |
| :class:`OHEMCrossEntropyLoss` (mmseg's ``OHEMPixelSampler``) | a direct sort |
| :class:`DiceLoss`, :class:`FocalLoss`, :class:`LovaszSoftmaxLoss` | ``segmentation_models_pytorch.losses`` |
| :class:`BoundaryLoss` (Kervadec et al.) | brute-force numpy distances |
| :class:`EdgeBCELoss`, :class:`EdgeAttentionLoss`, :class:`InverseFormLoss` | gradient and shift checks |
| :class:`SegFixLoss` (a SegFix network's, not a segmentor's) | ``F.cross_entropy`` |
| :class:`MaskFormerLoss` (a MaskFormer's matching loss) | ``torchvision.ops.sigmoid_focal_loss``, numpy Dice, brute-force matching |
"""

from sdnseg.models.losses.boundary import BoundaryLoss, signed_distance_maps
from sdnseg.models.losses.combined import CombinedLoss, build_loss, build_loss_term, is_output_loss
from sdnseg.models.losses.cross_entropy import cross_entropy, segmentation_loss
from sdnseg.models.losses.dice import DiceLoss
from sdnseg.models.losses.edge import EdgeAttentionLoss, EdgeBCELoss, edge_targets
from sdnseg.models.losses.focal import FocalLoss
from sdnseg.models.losses.inverseform import InverseFormLoss, inverse_form_distance
from sdnseg.models.losses.lovasz import LovaszSoftmaxLoss
from sdnseg.models.losses.maskformer import MaskFormerLoss
from sdnseg.models.losses.ohem import OHEMCrossEntropyLoss, ohem_keep_mask
from sdnseg.models.losses.segfix import SegFixLoss
from sdnseg.models.losses.weighted import (
    CrossEntropyLoss,
    class_pixel_counts,
    median_frequency_weights,
)

__all__ = [
    "BoundaryLoss",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "EdgeAttentionLoss",
    "EdgeBCELoss",
    "FocalLoss",
    "InverseFormLoss",
    "LovaszSoftmaxLoss",
    "MaskFormerLoss",
    "OHEMCrossEntropyLoss",
    "SegFixLoss",
    "build_loss",
    "build_loss_term",
    "class_pixel_counts",
    "cross_entropy",
    "edge_targets",
    "inverse_form_distance",
    "is_output_loss",
    "median_frequency_weights",
    "ohem_keep_mask",
    "segmentation_loss",
    "signed_distance_maps",
]
