"""Self-describing, atomically written checkpoints, and :func:`load_model`.

Besides Lightning's usual entries (``state_dict`` with the segmentor under ``net.``, optimiser,
scheduler, loop progress, the datamodule's sampler position, ``hyper_parameters``),
:class:`~sdnseg.engine.SegmentationModule` stores under ``checkpoint["sdnseg"]`` everything needed
to use the weights without the training config (see :data:`METADATA_KEYS`), and under
``checkpoint["sdnseg_rng"]`` the random generators' states, so a resumed run continues the
uninterrupted one bit for bit. All of it is plain Python and tensors, so
``torch.load(..., weights_only=True)`` reads it.

Writes go through :class:`AtomicCheckpointIO`: a temporary file in the target folder, fsync,
then ``os.replace``, so a crash mid-write leaves the previous ``last.ckpt`` whole.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

__all__ = [
    "METADATA_KEY",
    "METADATA_KEYS",
    "RNG_KEY",
    "AtomicCheckpointIO",
    "check_compatible",
    "get_rng_state",
    "load_model",
    "read_metadata",
    "set_rng_state",
]

METADATA_KEY = "sdnseg"
RNG_KEY = "sdnseg_rng"
FORMAT_VERSION = 1
# What checkpoint["sdnseg"] holds.
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


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic.

    The checkpoint goes to ``.<name>.tmp-<pid>`` beside the target, is flushed to disk and then
    renamed over the target (``os.replace`` is atomic within a file system). Remote paths
    (``s3://`` and the like) fall back to Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            with open(temp, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    # Persist the rename itself; not every platform lets a directory be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def get_rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and ``random`` generator states, as plain data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_metadata(checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> dict:
    """``checkpoint["sdnseg"]``, or a ``ValueError`` saying the file is not an sdnseg one."""
    meta = checkpoint.get(METADATA_KEY)
    if not isinstance(meta, Mapping):
        raise ValueError(
            f"{path} is not an sdnseg checkpoint (no {METADATA_KEY!r} entry); it was not written "
            "by sdnseg fit / SegmentationModule"
        )
    return dict(meta)


def check_compatible(
    meta: Mapping[str, Any], arch: str | None, model_config: Mapping | None, num_classes: int
) -> None:
    """Raise ``ValueError`` if a checkpoint's model differs from the one it is loaded into.

    Compared: the zoo name, the resolved model configuration (backbone, decoder, SDN settings,
    overrides) and the number of classes. A model given from Python (``arch`` None) is compared
    by class count only; its state dict is checked by ``load_state_dict`` afterwards.
    """
    theirs = meta.get("arch")
    if arch is not None and theirs is not None and arch != theirs:
        raise ValueError(
            f"the checkpoint holds a {theirs!r} model but this run builds {arch!r}; "
            f"use --model.arch {theirs} (or leave --model.arch out to take it from the checkpoint)"
        )
    if model_config is not None and meta.get("model_config") is not None:
        differs = sorted(
            key
            for key in set(model_config) | set(meta["model_config"])
            if _plain(model_config.get(key)) != _plain(meta["model_config"].get(key))
        )
        if differs:
            raise ValueError(
                f"the checkpoint's {theirs!r} model differs from this run's in {differs} "
                f"(checkpoint overrides {meta.get('model_overrides')}); use the checkpoint's "
                "--model.model_overrides"
            )
    if meta.get("num_classes") is not None and meta["num_classes"] != num_classes:
        raise ValueError(
            f"the checkpoint's model has {meta['num_classes']} classes but this run's has "
            f"{num_classes}; set --model.num_classes {meta['num_classes']} or use data with as "
            "many classes"
        )


def _plain(value: Any) -> Any:
    # Tuples and lists compare equal after a round trip through YAML / the checkpoint.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_model(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    model: nn.Module | None = None,
):
    """A ready-to-use :class:`~sdnseg.engine.Predictor` from an sdnseg checkpoint.

    >>> model = sdnseg.load_model("runs/quickstart/version_0/checkpoints/last.ckpt")
    >>> labels = model.predict(image)  # PIL / uint8 array / tensor -> (H, W) int64

    Args:
        path: a checkpoint written by ``sdnseg fit`` / :class:`SegmentationModule`.
        map_location: device for the weights.
        model: the segmentor to load the weights into, for checkpoints of a model given from
            Python (zoo models are rebuilt from the stored configuration).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an sdnseg checkpoint, or weights that do not fit ``model``.
    """
    from sdnseg.engine.predictor import Predictor
    from sdnseg.models import ModelConfig, build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    meta = read_metadata(checkpoint, path)
    if model is None:
        if meta.get("model_config") is None:
            raise ValueError(
                f"{path} holds a model given from Python, not a zoo model; pass it as "
                "load_model(path, model=...)"
            )
        model = build_model(ModelConfig.from_dict(meta["model_config"]), meta["num_classes"])
    state = {
        key.removeprefix("net."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("net.")
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the model: {err}") from None
    model.to(map_location)
    inference = meta.get("inference") or {}
    return Predictor(
        model,
        classes=meta["classes"],
        palette=meta["palette"],
        mean=meta["mean"],
        std=meta["std"],
        base_size=meta.get("base_size"),
        mode=inference.get("mode", "whole"),
        crop_size=inference.get("crop_size"),
        stride=inference.get("stride"),
        ignore_index=meta.get("ignore_index", 255),
    )
