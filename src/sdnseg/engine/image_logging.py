"""Prediction overlays and error maps of a few fixed validation images, in TensorBoard.

:class:`ValidationImages` logs, after every validation epoch, one picture per image under
``val_images/<i>``: the prediction blended with the image (:func:`~sdnseg.engine.callbacks.overlay`),
the ground truth, the prediction and the error map of the paper's Figure 1
(:func:`sdnseg.viz.segmentation.error_panel`: wrong pixels in the predicted class's colour, right
and unlabelled ones black). The images are the first ``num_images`` of the validation set, the
same at every epoch, so that the pictures show the model change, not the data. They are predicted
as validation predicts (the module's inference mode, probabilities resized to the mask's size).

The learning-rate and loss curves are the module's own logged scalars (``train/lr``,
``train/loss``, ``val/loss``), which the TensorBoard logger of ``sdnseg fit`` records.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from sdnseg.data import denormalize
from sdnseg.engine.callbacks import overlay
from sdnseg.inference.predictor import probabilities
from sdnseg.viz.palette import colorize
from sdnseg.viz.segmentation import error_panel

__all__ = ["ValidationImages"]

TAG = "val_images"


class ValidationImages(Callback):
    """Log overlays and error maps of the first ``num_images`` validation images to TensorBoard.

    Args:
        num_images: how many images (fewer if the validation set is smaller).
        alpha: the prediction's colour weight in the overlay.

    Does nothing without a :class:`~lightning.pytorch.loggers.TensorBoardLogger` or validation data.
    """

    def __init__(self, num_images: int = 4, alpha: float = 0.5) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        self.num_images = num_images
        self.alpha = alpha
        self._samples: list[dict[str, Any]] | None = None

    @staticmethod
    def _tensorboard(trainer: L.Trainer) -> TensorBoardLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def _fixed_samples(self, trainer: L.Trainer) -> list[dict[str, Any]]:
        if self._samples is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
            dataset = getattr(loader, "dataset", None)
            count = min(self.num_images, len(dataset)) if dataset is not None else 0
            self._samples = [dataset[i] for i in range(count)]
        return self._samples

    def panels(
        self, pl_module: L.LightningModule, samples: list[dict[str, Any]]
    ) -> list[np.ndarray]:
        """One (H, 4·W + gaps, 3) uint8 picture per sample: overlay, truth, prediction, errors."""
        data = pl_module.metadata().data
        palette, ignore_index = data.palette, data.ignore_index
        pictures = []
        for sample in samples:
            image = sample["image"][None].to(pl_module.device)
            mask = torch.as_tensor(sample["mask"]).numpy()
            with torch.no_grad():
                probs = probabilities(
                    pl_module.net,
                    image,
                    mask.shape[-2:],
                    pl_module.evaluation.eval_mode,
                    pl_module.evaluation.eval_crop,
                    pl_module.evaluation.eval_stride,
                )
            pred = probs.argmax(dim=1)[0].cpu().numpy()
            rgb = denormalize(image[0], data.mean, data.std, mask.shape[-2:])
            rgb = rgb.permute(1, 2, 0).cpu().numpy()
            # Values that are no class (CamVid's void 11, 255) are unlabelled.
            mask = np.where((mask >= 0) & (mask < len(palette)), mask, ignore_index)
            blend = overlay(rgb, colorize(pred, palette), self.alpha)
            pictures.append(error_panel(pred, mask, palette, ignore_index, image=blend))
        return pictures

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A SegFix network predicts no label map to picture.
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or getattr(pl_module, "is_segfix", False)
        ):
            return
        tensorboard = self._tensorboard(trainer)
        if tensorboard is None:
            return
        samples = self._fixed_samples(trainer)
        for index, picture in enumerate(self.panels(pl_module, samples)):
            tensorboard.experiment.add_image(
                f"{TAG}/{index}", picture, trainer.global_step, dataformats="HWC"
            )
