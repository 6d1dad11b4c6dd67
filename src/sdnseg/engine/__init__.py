"""Training, evaluation and the command line: Lightning around the plain models.

:class:`SegmentationModule` holds the training logic for a segmentor; :func:`load_model` turns a
checkpoint into a ready :class:`Predictor`; :class:`AtomicCheckpointIO` and
:class:`LastCheckpoint` are what the ``sdnseg`` command (:mod:`sdnseg.engine.cli`) adds to a
plain ``lightning.Trainer``.
"""

from sdnseg.engine.callbacks import LastCheckpoint
from sdnseg.engine.checkpoint import AtomicCheckpointIO, load_model
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.module import SegmentationModule
from sdnseg.engine.predictor import Predictor
from sdnseg.engine.sampler import ResumableRandomSampler

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "Predictor",
    "ResumableRandomSampler",
    "SegmentationDataModule",
    "SegmentationModule",
    "load_model",
]
