"""Layers of the Semantic Diffusion Network; functional forms live in :mod:`sdnseg.nn.functional`."""

from sdnseg.nn import functional
from sdnseg.nn._dispatch import sdc_backend, set_sdc_backend
from sdnseg.nn.sdc import CentralDifferenceConv2d, SemanticConv2d, SemanticDifferenceConv2d
from sdnseg.nn.sdn import SDN, ConcatSDN, MultiScaleSDN, SingleScaleSDN

__all__ = [
    "SDN",
    "CentralDifferenceConv2d",
    "ConcatSDN",
    "MultiScaleSDN",
    "SemanticConv2d",
    "SemanticDifferenceConv2d",
    "SingleScaleSDN",
    "functional",
    "sdc_backend",
    "set_sdc_backend",
]
