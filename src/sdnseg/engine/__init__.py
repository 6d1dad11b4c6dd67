"""Training, evaluation and the command line: Lightning around the plain models.

:class:`SegmentationModule` holds the training logic for a segmentor; :func:`load_model` turns a
checkpoint into a ready :class:`Predictor` (both from :mod:`sdnseg.inference`, re-exported here);
:class:`AtomicCheckpointIO` and :class:`LastCheckpoint` are what the ``sdnseg`` command
(:mod:`sdnseg.engine.cli`) adds to a plain ``lightning.Trainer``.
"""

from sdnseg.engine.callbacks import LastCheckpoint
from sdnseg.engine.checkpoint_io import AtomicCheckpointIO
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.module import SegmentationModule
from sdnseg.engine.sampler import ResumableRandomSampler
from sdnseg.inference import Predictor, load_model

__all__ = [
    "AtomicCheckpointIO",
    "LastCheckpoint",
    "Predictor",
    "ResumableRandomSampler",
    "SegmentationDataModule",
    "SegmentationModule",
    "load_model",
]
