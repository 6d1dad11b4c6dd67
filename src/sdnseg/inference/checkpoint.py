"""Reading sdnseg checkpoints: the :class:`CheckpointRecord` they carry, and :func:`load_model`.

Besides Lightning's usual entries (``state_dict`` with the segmentor under ``net.``, optimiser,
scheduler, loop progress, ``hyper_parameters``), a checkpoint written by ``sdnseg fit`` /
:class:`~sdnseg.engine.SegmentationModule` holds under ``checkpoint["sdnseg"]`` everything needed
to use the weights without the training config: one :class:`CheckpointRecord`, stored as plain
Python (:meth:`CheckpointRecord.to_dict`) so that ``torch.load(..., weights_only=True)`` reads it.

Format version 1 (the only one so far) is the flat dict :data:`METADATA_KEYS` lists, with
``inference`` a dict ``{"mode", "crop_size", "stride"}``. A record of a newer version is refused
with an error naming the version, rather than read wrongly.

This module reads; the training side (atomic writes, random generator states, the compatibility
check on resume) is :mod:`sdnseg.engine.checkpoint_io`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdnseg.data import IGNORE_INDEX, default_palette
from sdnseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sdnseg.inference.hub import load_pretrained
from sdnseg.inference.predictor import Predictor
from sdnseg.models import ModelConfig, build_model

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "METADATA_KEYS",
    "CheckpointRecord",
    "DataInfo",
    "InferenceSettings",
    "checkpoint_weights",
    "first_non_finite",
    "load_file",
    "load_model",
    "read_checkpoint",
    "read_record",
]

METADATA_KEY = "sdnseg"
# The record layout written now; from_dict reads this version and every older one.
FORMAT_VERSION = 1
# What checkpoint["sdnseg"] holds (format version 1).
METADATA_KEYS = (
    "format_version",
    "arch",  # zoo name, or None for a model given from Python
    "model_overrides",  # create_model overrides
    "model_config",  # ModelConfig.to_dict(), or None
    "num_classes",
    "classes",
    "palette",
    "mean",
    "std",
    "ignore_index",
    "base_size",  # test resize (H, W), or None for full size
    "inference",  # {"mode", "crop_size", "stride"}
)
_INFERENCE_KEYS = ("mode", "crop_size", "stride")


def _ints(value: Sequence[int] | None) -> tuple[int, ...] | None:
    return tuple(int(v) for v in value) if value is not None else None


def _list(value: Sequence[Any] | None) -> list[Any] | None:
    return list(value) if value is not None else None


@dataclass(frozen=True)
class InferenceSettings:
    """How the segmentor is run on an image: ``"whole"``, or ``"slide"`` with a window (h, w)
    moved by ``stride`` (h, w)."""

    mode: str = "whole"
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # Lists from YAML or a checkpoint become tuples, so records compare equal after a save.
        object.__setattr__(self, "crop_size", _ints(self.crop_size))
        object.__setattr__(self, "stride", _ints(self.stride))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "crop_size": _list(self.crop_size), "stride": _list(self.stride)}


@dataclass(frozen=True)
class DataInfo:
    """What the training data tells about its images: class names and colours, normalisation
    (0..255 scale), the test resize (H, W) or None for full size, and the unlabelled value.

    ``classes`` and ``palette`` are None until the data (or a checkpoint) gives them; see
    :meth:`complete`.
    """

    classes: tuple[str, ...] | None = None
    palette: tuple[tuple[int, ...], ...] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    base_size: tuple[int, ...] | None = None
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.classes is not None:
            set_(self, "classes", tuple(self.classes))
        if self.palette is not None:
            set_(self, "palette", tuple(tuple(int(v) for v in c) for c in self.palette))
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        set_(self, "base_size", _ints(self.base_size))
        set_(self, "ignore_index", int(self.ignore_index))

    def complete(self, num_classes: int) -> DataInfo:
        """This, with generic class names (``class<i>``) and colours where none were given."""
        classes, palette = self.classes, self.palette
        if classes is None:
            classes = tuple(f"class{i}" for i in range(num_classes))
        if palette is None:
            palette = default_palette(num_classes)
        return dataclasses.replace(self, classes=classes, palette=palette)


@dataclass(frozen=True)
class CheckpointRecord:
    """What an sdnseg checkpoint says about its model, beside the weights.

    Args:
        arch: zoo model name, or None for a model given from Python.
        model_overrides: the :func:`~sdnseg.models.create_model` overrides of the run.
        model_config: the resolved :meth:`ModelConfig.to_dict() <sdnseg.models.ModelConfig>`,
            or None for a model given from Python (then only the weights are stored).
        num_classes: output classes of the segmentor.
        data: class names, palette, normalisation, test size, unlabelled value; complete
            (``classes`` and ``palette`` set).
        inference: the mode the model was validated in.
        format_version: the layout the record was read from; :meth:`to_dict` always writes
            the current one, :data:`FORMAT_VERSION`.
    """

    arch: str | None
    model_overrides: dict[str, Any]
    model_config: dict[str, Any] | None
    num_classes: int
    data: DataInfo
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """``checkpoint["sdnseg"]``: plain Python in the :data:`METADATA_KEYS` layout."""
        data = self.data
        return {
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "model_overrides": dict(self.model_overrides),
            "model_config": dict(self.model_config) if self.model_config is not None else None,
            "num_classes": self.num_classes,
            "classes": _list(data.classes),
            "palette": [list(c) for c in data.palette] if data.palette is not None else None,
            "mean": list(data.mean),
            "std": list(data.std),
            "base_size": _list(data.base_size),
            "ignore_index": data.ignore_index,
            "inference": self.inference.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, meta: Mapping[str, Any], path: str | os.PathLike = "checkpoint"
    ) -> CheckpointRecord:
        """Read what :meth:`to_dict` wrote, in this or an older format version.

        Raises:
            ValueError: a format version this sdnseg does not know (a newer sdnseg wrote it), or
                missing entries; the message names ``path``.
        """
        version = meta.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(
                f"{path}: the sdnseg record has no integer format_version ({version!r})"
            )
        if not 1 <= version <= FORMAT_VERSION:
            newer = "; it was written by a newer sdnseg: upgrade to load it"
            raise ValueError(
                f"{path} holds an sdnseg checkpoint of format version {version}, but this sdnseg "
                f"reads versions 1 to {FORMAT_VERSION}{newer if version > FORMAT_VERSION else ''}"
            )
        missing = [key for key in METADATA_KEYS if key not in meta]
        inference = meta.get("inference")
        if isinstance(inference, Mapping):
            missing += [f"inference.{key}" for key in _INFERENCE_KEYS if key not in inference]
        elif "inference" not in missing:
            missing.append("inference")  # present but not a dict: unusable
        if missing:
            raise ValueError(
                f"{path}: the sdnseg record (format version {version}) lacks {missing}; the file "
                "is damaged or was edited"
            )
        return cls(
            arch=meta["arch"],
            model_overrides=dict(meta["model_overrides"] or {}),
            model_config=dict(meta["model_config"]) if meta["model_config"] is not None else None,
            num_classes=meta["num_classes"],
            data=DataInfo(
                classes=meta["classes"],
                palette=meta["palette"],
                mean=meta["mean"],
                std=meta["std"],
                base_size=meta["base_size"],
                ignore_index=meta["ignore_index"],
            ),
            inference=InferenceSettings(**{key: inference[key] for key in _INFERENCE_KEYS}),
            format_version=version,
        )


def read_record(
    checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint"
) -> CheckpointRecord:
    """The :class:`CheckpointRecord` of a loaded checkpoint.

    Raises:
        ValueError: no ``checkpoint["sdnseg"]`` (not an sdnseg checkpoint), or a record
            :meth:`CheckpointRecord.from_dict` refuses; the message names ``path``.
    """
    meta = checkpoint.get(METADATA_KEY)
    if not isinstance(meta, Mapping):
        raise ValueError(
            f"{path} is not an sdnseg checkpoint (no {METADATA_KEY!r} entry); it was not written "
            "by sdnseg fit / SegmentationModule"
        )
    return CheckpointRecord.from_dict(meta, path)


def read_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, mmap: bool = False
) -> tuple[dict[str, Any], CheckpointRecord]:
    """A checkpoint file's contents (``torch.load``, ``weights_only``) and its record.

    Args:
        path: a checkpoint written by ``sdnseg fit`` / :class:`~sdnseg.engine.SegmentationModule`.
        map_location: device for the tensors.
        mmap: map the file instead of reading it, for a look at the metadata of a large one.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file, not an sdnseg checkpoint, or a record of an unknown
            format version.
    """
    checkpoint = load_file(path, map_location, mmap=mmap)
    return checkpoint, read_record(checkpoint, path)


# Every file torch.save writes (the zip format, PyTorch >= 1.6) starts with a zip entry header.
_ZIP_MAGIC = b"PK\x03\x04"


def load_file(
    path: str | os.PathLike, map_location: Any = "cpu", *, mmap: bool = False
) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``, with one-line errors naming the file and why.

    torch's own errors for a bad file do not say which file, or mislead: an empty file gives an
    empty ``EOFError`` (or, mapped, "mmap can only be used with files saved with torch.save"),
    a text file ``KeyError: 101``. The file's size and first bytes tell the reason instead.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: empty, truncated or damaged, not a PyTorch file, or not a checkpoint (a dict).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = file.stat().st_size
    if size == 0:
        raise ValueError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    with open(file, "rb") as handle:
        magic = handle.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise ValueError(
            f"cannot read checkpoint {path}: not a PyTorch checkpoint (it does not start with "
            f"the zip header torch.save writes; first bytes {magic!r})"
        )
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # a zip that torch cannot read: cut short or damaged
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"cannot read checkpoint {path} ({size} bytes): truncated or damaged ({detail})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"cannot read checkpoint {path}: it holds a {type(checkpoint).__name__}, not a "
            "checkpoint dict"
        )
    return checkpoint


def first_non_finite(tensors: Mapping[str, Any]) -> str | None:
    """The name of the first floating-point tensor in ``tensors`` holding a NaN or an Inf, with
    its count of such values ("name (3 of 64 values)"), or None when all are finite."""
    for name, value in tensors.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return f"{name} ({bad} of {value.numel()} values non-finite)"
    return None


def checkpoint_weights(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> Mapping:
    """The checkpoint's ``state_dict``, refused (``ValueError`` naming ``path``) when it is
    missing or holds NaN or Inf (:func:`first_non_finite`)."""
    weights = checkpoint.get("state_dict")
    if not isinstance(weights, Mapping):
        raise ValueError(f"{path} has no state_dict (the weights); the file is damaged or edited")
    if (bad := first_non_finite(weights)) is not None:
        raise ValueError(
            f"{path} holds non-finite weights: {bad}; the run diverged before this checkpoint "
            "was written (use an earlier checkpoint)"
        )
    return weights


def load_model(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    model: nn.Module | None = None,
) -> Predictor:
    """A ready-to-use :class:`~sdnseg.inference.Predictor` from an sdnseg checkpoint.

    >>> model = sdnseg.load_model("runs/quickstart/version_0/checkpoints/last.ckpt")
    >>> labels = model.predict(image)  # PIL / uint8 array / tensor -> (H, W) int64

    Args:
        path: a checkpoint written by ``sdnseg fit`` / :class:`SegmentationModule`, or a
            folder written by ``Segmentor.save_pretrained`` (:mod:`sdnseg.inference.hub`).
        map_location: device for the weights.
        model: the segmentor to load the weights into, for checkpoints of a model given from
            Python (zoo models are rebuilt from the stored configuration).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: an unreadable file, not an sdnseg checkpoint, a SegFix network's checkpoint,
            weights holding NaN or Inf, or weights that do not fit ``model``.
    """
    if Path(path).is_dir():  # a Segmentor.save_pretrained folder (sdnseg export --format hub)
        return load_pretrained(path, map_location)
    checkpoint, record = read_checkpoint(path, map_location)
    if model is None:
        if record.model_config is None:
            raise ValueError(
                f"{path} holds a model given from Python, not a zoo model; pass it as "
                "load_model(path, model=...)"
            )
        if record.model_config.get("decoder") == "segfix":
            raise ValueError(
                f"{path} holds a SegFix network ({record.arch}), which refines another model's "
                "label maps and predicts none itself; load it with sdnseg.inference.load_segfix"
            )
        # The checkpoint's weights replace any installed encoder weights: don't read those.
        config = ModelConfig.from_dict(record.model_config)
        model = build_model(config, record.num_classes, load_weights=False)
    weights = checkpoint_weights(checkpoint, path)
    state = {
        key.removeprefix("net."): value for key, value in weights.items() if key.startswith("net.")
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model: {err}") from None
    model.to(map_location)
    data, inference = record.data, record.inference
    return Predictor(
        model,
        classes=data.classes,
        palette=data.palette,
        mean=data.mean,
        std=data.std,
        base_size=data.base_size,
        mode=inference.mode,
        crop_size=inference.crop_size,
        stride=inference.stride,
        ignore_index=data.ignore_index,
    )
