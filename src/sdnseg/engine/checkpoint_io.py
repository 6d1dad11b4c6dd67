"""The training side of checkpoints: atomic writes, random generator states, resume checks.

A checkpoint of ``sdnseg fit`` holds, besides Lightning's entries, the model's
:class:`~sdnseg.inference.CheckpointRecord` under ``checkpoint["sdnseg"]`` (read by
:mod:`sdnseg.inference.checkpoint`) and, under ``checkpoint["sdnseg_rng"]``, the random
generators' states, so a resumed run continues the uninterrupted one bit for bit. All of it is
plain Python and tensors, so ``torch.load(..., weights_only=True)`` reads it.

Writes go through :class:`AtomicCheckpointIO` (:func:`sdnseg.io.atomic_write`), so a crash
mid-write leaves the previous ``last.ckpt`` whole, and never write a checkpoint whose weights or
buffers hold NaN or Inf (:class:`NonFiniteCheckpoint`): the file on disk stays the last good one.
Reads give one-line errors naming the file (:func:`sdnseg.inference.checkpoint.load_file`).
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

from sdnseg.inference.checkpoint import CheckpointRecord, first_non_finite, load_file
from sdnseg.io import TEMP_MARKER, atomic_write

__all__ = [
    "RNG_KEY",
    "AtomicCheckpointIO",
    "NonFiniteCheckpoint",
    "check_compatible",
    "get_rng_state",
    "remove_stale_temp_files",
    "set_rng_state",
]

RNG_KEY = "sdnseg_rng"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (:func:`sdnseg.io.atomic_write`).

    Remote paths (``s3://`` and the like) fall back to Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        if (bad := first_non_finite(checkpoint.get("state_dict", {}))) is not None:
            raise NonFiniteCheckpoint(path, bad)
        with atomic_write(str(path).removeprefix("file://")) as temp, open(temp, "wb") as file:
            torch.save(checkpoint, file)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's reader for local files, with :func:`~sdnseg.inference.checkpoint.load_file`'s
        one-line errors (empty, truncated, not a checkpoint) naming the file."""
        if weights_only is False or ("://" in str(path) and not str(path).startswith("file://")):
            return super().load_checkpoint(path, map_location, weights_only)
        return load_file(str(path).removeprefix("file://"), map_location)


class NonFiniteCheckpoint(FloatingPointError):
    """A checkpoint was not written because a weight or buffer holds NaN or Inf.

    Attributes:
        path: the file that was not written.
        tensor: the first bad tensor, with its count of non-finite values.
    """

    def __init__(self, path: str | os.PathLike, tensor: str) -> None:
        self.path, self.tensor = str(path), tensor
        super().__init__(f"not writing checkpoint {path}: {tensor}")


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder``; return them.

    :func:`sdnseg.io.atomic_write` names them ``.<name>.tmp-<pid>-<random><suffix>``; a file whose
    writer process is no longer alive will never be renamed (``kill -9`` mid-write). Files of
    live processes are left alone.
    """
    removed = []
    for temp in Path(folder).glob(f".*{TEMP_MARKER}*") if Path(folder).is_dir() else []:
        pid = temp.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


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


def check_compatible(
    record: CheckpointRecord, arch: str | None, model_config: Mapping | None, num_classes: int
) -> None:
    """Raise ``ValueError`` if a checkpoint's model differs from the one it is loaded into.

    Compared: the zoo name, the resolved model configuration (backbone, decoder, SDN settings,
    overrides) and the number of classes. A model given from Python (``arch`` None) is compared
    by class count only; its state dict is checked by ``load_state_dict`` afterwards.
    """
    theirs = record.arch
    if arch is not None and theirs is not None and arch != theirs:
        raise ValueError(
            f"the checkpoint holds a {theirs!r} model but this run builds {arch!r}; "
            f"use --model.arch {theirs} (or leave --model.arch out to take it from the checkpoint)"
        )
    if model_config is not None and record.model_config is not None:
        differs = sorted(
            key
            for key in set(model_config) | set(record.model_config)
            if _plain(model_config.get(key)) != _plain(record.model_config.get(key))
        )
        if differs:
            raise ValueError(
                f"the checkpoint's {theirs!r} model differs from this run's in {differs} "
                f"(checkpoint overrides {record.model_overrides}); use the checkpoint's "
                "--model.model_overrides"
            )
    if record.num_classes != num_classes:
        raise ValueError(
            f"the checkpoint's model has {record.num_classes} classes but this run's has "
            f"{num_classes}; set --model.num_classes {record.num_classes} or use data with as "
            "many classes"
        )


def _plain(value: Any) -> Any:
    # Tuples and lists compare equal after a round trip through YAML / the checkpoint.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
