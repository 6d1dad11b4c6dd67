"""Inference without training: a checkpoint to a :class:`Predictor`, and what it runs on.

:func:`load_model` reads an sdnseg checkpoint (its :class:`CheckpointRecord` and weights) and
returns a :class:`Predictor` that labels raw images with the evaluation pipeline the model was
validated with. :mod:`~sdnseg.inference.images` lists and loads the images ``sdnseg predict``
labels; :mod:`~sdnseg.inference.postprocess` refines probabilities with DenseCRF or SegFix, whose
refinement of any model's label maps is :mod:`~sdnseg.inference.segfix`.

This package imports torch, timm and sdnseg's ``models``, ``data`` and ``viz`` only; never
Lightning, which is the training side (:mod:`sdnseg.engine`).
"""

from sdnseg.inference.checkpoint import (
    CheckpointRecord,
    DataInfo,
    InferenceSettings,
    load_model,
    read_checkpoint,
    read_record,
)
from sdnseg.inference.predictor import Predictor, probabilities, to_chw_uint8
from sdnseg.inference.segfix import (
    SegFixRefiner,
    load_segfix,
    refine_with_offsets,
    segfix_offsets,
    shift_by_offsets,
)

__all__ = [
    "CheckpointRecord",
    "DataInfo",
    "InferenceSettings",
    "Predictor",
    "SegFixRefiner",
    "load_model",
    "load_segfix",
    "probabilities",
    "read_checkpoint",
    "read_record",
    "refine_with_offsets",
    "segfix_offsets",
    "shift_by_offsets",
    "to_chw_uint8",
]
