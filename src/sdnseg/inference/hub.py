"""A ``save_pretrained`` folder as a :class:`Predictor`, and the metrics a checkpoint carries.

``Segmentor.save_pretrained(dir)`` (:mod:`sdnseg.models.hub`) writes ``model.safetensors``,
``config.json`` and a model card; :func:`load_pretrained` turns such a folder (or Hub repository)
into the :class:`Predictor` :func:`sdnseg.load_model` returns for a checkpoint, with the classes,
palette, normalisation and inference mode of ``config.json``. ``sdnseg export --format hub``
writes the folder from a training checkpoint, whose last validation metrics
(``checkpoint[METRICS_KEY]``, :func:`metrics_record`) go into ``config.json`` and the card.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from sdnseg.inference.predictor import Predictor
from sdnseg.models import Segmentor
from sdnseg.models.hub import CONFIG_NAME, hub_file

__all__ = [
    "DATA_KEYS",
    "METRICS_KEY",
    "load_pretrained",
    "metrics_record",
    "module_arguments",
    "read_pretrained_config",
]

METRICS_KEY = "sdnseg_metrics"  # checkpoint entry: {name: float} of the last validation
DATA_KEYS = ("classes", "palette", "mean", "std", "base_size", "ignore_index")  # DataInfo's
_RECORDED = ("val/", "test/")


def metrics_record(logged: Mapping[str, Any]) -> dict[str, float]:
    """The scalar validation and test metrics of a run's logged values (e.g. Lightning's
    ``trainer.callback_metrics``), as floats, sorted by name."""
    record = {}
    for name, value in logged.items():
        if not name.startswith(_RECORDED):
            continue
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            record[name] = float(value)
    return dict(sorted(record.items()))


def read_pretrained_config(name_or_path: str | os.PathLike, **download_kwargs: Any) -> dict:
    """The ``config.json`` of a saved model folder (or Hub repository), as a dict."""
    path = hub_file(name_or_path, CONFIG_NAME, **download_kwargs)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None


def module_arguments(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~sdnseg.engine.SegmentationModule` arguments that describe the network of a
    ``config.json`` (what ``sdnseg predict --ckpt_path <folder>`` fills in)."""
    inference = config.get("inference") or {}
    return {
        "arch": config.get("arch"),
        "num_classes": config.get("num_classes"),
        "model_overrides": dict(config.get("overrides") or {}),
        "eval_mode": inference.get("mode"),
        "eval_crop": inference.get("crop_size"),
        "eval_stride": inference.get("stride"),
    }


def load_pretrained(
    name_or_path: str | os.PathLike, map_location: str | torch.device = "cpu", **download_kwargs
) -> Predictor:
    """A :class:`Predictor` from a ``save_pretrained`` folder or Hub repository id.

    Raises:
        FileNotFoundError: no folder, or no ``config.json`` / ``model.safetensors`` in it.
        ValueError: a ``config.json`` naming no zoo model or lacking keys, or tensors that do not
            fit the model it describes (the messages name the file and the key).
    """
    net = Segmentor.from_pretrained(name_or_path, map_location=map_location, **download_kwargs)
    meta, inference = net.hub_metadata, net.hub_metadata["inference"]
    return Predictor(
        net,
        **{key: meta[key] for key in DATA_KEYS},
        mode=inference["mode"],
        crop_size=inference.get("crop_size"),
        stride=inference.get("stride"),
    )
