"""Training, evaluation and the command line: Lightning around the plain models.

``SegmentationModule`` holds the training logic for a segmentor, ``load_model`` turns a checkpoint
into a ready :class:`Predictor`, ``sdnseg.engine.cli`` is the ``sdnseg`` command.
"""

from sdnseg.engine.checkpoint import AtomicCheckpointIO, load_model
from sdnseg.engine.module import SegmentationModule
from sdnseg.engine.predictor import Predictor

__all__ = ["AtomicCheckpointIO", "Predictor", "SegmentationModule", "load_model"]
