"""Callbacks of the CLI: keeping ``last.ckpt`` current, writing predictions to disk, a progress bar.

:class:`LastCheckpoint` rewrites ``last.ckpt`` every N steps, after each validation and when fit
ends. (Lightning 2.6's ``ModelCheckpoint(save_last=True)`` only refreshes it when its own
monitored checkpoint is saved, and not at the end of fit.)

:class:`PredictionWriter` saves, per image, the label map (``<stem>_labels.png``, class ids as
8-bit grey, 16-bit past 255: :func:`sdnseg.evaluation.outputs.write_label_png`), its palette colours (``<stem>_color.png``), a blend with the image
(``<stem>_overlay.png``) and, when asked and a mask exists, the error map of the paper's Figure 1
(``<stem>_errors.png``, :func:`sdnseg.viz.segmentation.error_map`): wrong pixels in the colour of
the predicted class, right and unlabelled ones (mask values outside the classes) black.

:class:`EpochProgressBar` is Lightning's rich progress bar with a true epoch count: a run bounded
by ``max_steps`` has ``max_epochs = -1``, which Lightning shows as ``Epoch 4/-2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import (
    BasePredictionWriter,
    Callback,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from sdnseg.engine.checkpoint_io import NonFiniteCheckpoint, remove_stale_temp_files
from sdnseg.evaluation.outputs import write_label_png
from sdnseg.viz.palette import colorize
from sdnseg.viz.segmentation import error_map

__all__ = [
    "BestCheckpoint",
    "EpochProgressBar",
    "LastCheckpoint",
    "PredictionWriter",
    "last_epoch",
    "last_good_sentence",
    "overlay",
]


def last_epoch(trainer: L.Trainer) -> int | None:
    """The index of the run's last epoch, or None when it cannot be known in advance.

    ``max_epochs`` bounds it when set; ``max_steps`` bounds it through the epoch length (batches
    over the gradient-accumulation factor), whichever ends the run first.
    """
    candidates = []
    if trainer.max_epochs is not None and trainer.max_epochs >= 0:
        candidates.append(trainer.max_epochs - 1)
    batches = trainer.num_training_batches
    if trainer.max_steps > 0 and isinstance(batches, int) and batches > 0:
        steps_per_epoch = max(1, batches // trainer.accumulate_grad_batches)
        candidates.append(math.ceil(trainer.max_steps / steps_per_epoch) - 1)
    return min(candidates) if candidates else None


class EpochProgressBar(RichProgressBar):
    """``RichProgressBar`` showing ``Epoch e/E`` with the real last epoch E (see :func:`last_epoch`),
    or ``Epoch e`` alone when E cannot be known."""

    def _get_train_description(self, current_epoch: int) -> str:
        last = last_epoch(self.trainer)
        description = f"Epoch {current_epoch}" + (f"/{last}" if last is not None else "")
        # Lightning pads to the validation label's width so that the bar does not flicker.
        return f"{description:{len(self.validation_description)}}"


class LastCheckpoint(Callback):
    """Keep ``<dirpath>/last.ckpt`` the latest good state of the run.

    Saved every ``every_n_train_steps`` optimiser steps (0: never by count), at the run's last
    step (``max_steps`` or the last batch of ``max_epochs``), after every validation during fit,
    and at the end of fit if nothing was saved for that step. Saves at a step's end hold what a
    resumed run needs to continue bit for bit (see ``docs/reliability.md``). A run that fails (a
    diverging loss, a crash) leaves the last one written; the writes are atomic with
    :class:`~sdnseg.engine.AtomicCheckpointIO`, which refuses weights or buffers holding NaN or
    Inf: then the run stops with an error naming the bad tensor and the last good checkpoint.
    Temporary files of killed runs (``.last.ckpt.tmp-<pid>-...``, pid no longer alive) are
    removed from ``dirpath`` and the resumed checkpoint's folder at setup.

    Args:
        dirpath: folder; None uses ``<trainer.log_dir>/checkpoints`` like ``ModelCheckpoint``.
        filename: file name in ``dirpath``.
        every_n_train_steps: save period in steps, 0 for none.
    """

    def __init__(
        self,
        dirpath: str | Path | None = None,
        filename: str = "last.ckpt",
        every_n_train_steps: int = 0,
    ) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.filename = filename
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None
        # (file, step) of the last checkpoint known good: written here, or the one resumed from.
        self.last_good: tuple[str, int] | None = None

    @property
    def path(self) -> Path | None:
        return self.dirpath / self.filename if self.dirpath is not None else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here, not at setup: Lightning knows the checkpoint it resumes from only after setup.
        folders = {self.dirpath}
        if trainer.ckpt_path and Path(trainer.ckpt_path).is_file():
            self.last_good = (str(trainer.ckpt_path), trainer.global_step)
            folders.add(Path(trainer.ckpt_path).parent)
        for folder in folders:
            remove_stale_temp_files(folder)

    def save(self, trainer: L.Trainer, again: bool = False) -> Path | None:
        """Write the checkpoint now (during fit, not twice for one step unless ``again``);
        return its path, or None when nothing was written."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return None
        if self._saved_step == trainer.global_step and not again:
            return None
        try:
            trainer.save_checkpoint(self.path, weights_only=False)
        except NonFiniteCheckpoint as err:
            raise FloatingPointError(
                f"the weights hold NaN or Inf at step {trainer.global_step}: {err.tensor}; the "
                f"run diverged, so {err.path} was not written. {last_good_sentence(trainer)}"
            ) from None
        self._saved_step = trainer.global_step
        self.last_good = (str(self.path), trainer.global_step)
        return self.path

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        period, step = self.every_n_train_steps, trainer.global_step
        last_step = 0 < trainer.max_steps <= step or (
            trainer.is_last_batch and trainer.current_epoch == last_epoch(trainer)
        )
        if (period and step % period == 0) or last_step:
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs ModelCheckpoint callbacks last; let them rank this validation first (their
        # own call then skips the step), so that the file holds the best-score bookkeeping. Again
        # after a save at this step's end, for the same reason.
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint):
                callback.on_validation_end(trainer, pl_module)
        self.save(trainer, again=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)


def last_good_sentence(trainer: L.Trainer) -> str:
    """ "The last good checkpoint is <file> (step N)." — or that there is none — for messages."""
    last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
    if last is not None and last.last_good is not None:
        path, step = last.last_good
        return (
            f"The last good checkpoint is {path} (step {step}): lower the learning rate, add "
            "--trainer.gradient_clip_val or use fp32, then resume from it with --ckpt_path "
            f"{path} --resume_mode weights (new hyper-parameters take effect; docs/reliability.md)."
        )
    return (
        "No checkpoint was written before that: lower the learning rate, add "
        "--trainer.gradient_clip_val or use fp32, and start again."
    )


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose best-score tracking survives a resume into a new run folder.

    Lightning restores ``best_model_score`` and ``best_k_models`` only when the folder is the
    same; each ``sdnseg fit`` run (a resume included) writes to a new ``version_N``, so the
    tracking restarted and the first validation after a resume was "best" whatever its score.
    Here the whole state is restored; files of an earlier run's folder are never deleted when a
    better checkpoint replaces them (only this run's own).
    """

    @property
    def state_key(self) -> str:
        # The plain ModelCheckpoint's key, so that checkpoints written before this class match.
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if self.dirpath is not None and Path(filepath).parent != Path(self.dirpath):
            return  # another run's file: left where it is
        super()._remove_checkpoint(trainer, filepath)


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``alpha`` × colours + (1 − alpha) × image, uint8 (H, W, 3)."""
    blend = alpha * colors.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    return blend.round().clip(0, 255).astype(np.uint8)


class PredictionWriter(BasePredictionWriter):
    """Write each predicted label map as PNGs (see the module docstring).

    Args:
        output_dir: target folder; None uses ``<trainer.log_dir>/predictions``.
        show_errors: also write the error map when the batch carries a mask.
        alpha: colour weight of the overlay.
    """

    def __init__(
        self, output_dir: str | Path | None = None, show_errors: bool = False, alpha: float = 0.5
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.show_errors = show_errors
        self.alpha = alpha
        self.written: list[Path] = []
        self.failed: list[str] = []  # one "path: reason" per image that could not be predicted

    def folder(self, trainer: L.Trainer) -> Path:
        if self.output_dir is None:
            self.output_dir = Path(trainer.log_dir or ".") / "predictions"
        return self.output_dir

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if prediction.get("error"):
            self.failed.extend(prediction["error"])
            return
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        data = pl_module.metadata().data
        palette, ignore_index = data.palette, data.ignore_index
        for index, path in enumerate(prediction["path"]):
            labels = prediction["labels"][index].numpy()
            colors = colorize(labels, palette)
            image = batch["rgb"][index].permute(1, 2, 0).cpu().numpy()
            stem = folder / Path(path).stem
            self.written.append(write_label_png(f"{stem}_labels.png", labels))
            outputs = {
                "color": colors,
                "overlay": overlay(image, colors, self.alpha),
            }
            mask = batch.get("mask", [None] * len(prediction["path"]))[index]
            if self.show_errors and mask is not None:
                mask = torch.as_tensor(mask).numpy()
                # Values that are no class (CamVid's void 11, 255) are unlabelled.
                mask = np.where((mask >= 0) & (mask < len(palette)), mask, ignore_index)
                outputs["errors"] = error_map(labels, mask, ignore_index, palette)
            for kind, array in outputs.items():
                target = Path(f"{stem}_{kind}.png")
                Image.fromarray(array).save(target)
                self.written.append(target)
