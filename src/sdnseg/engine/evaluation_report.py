"""``sdnseg validate|test --report DIR``: the evaluator's report for an sdnseg model's own run.

The same files as ``sdnseg evaluate`` (:func:`sdnseg.evaluation.outputs.write_evaluation`:
``evaluation.json``, ``per_class.csv``, ``report.html``) from the predictions the run scores, so
a user gets mIoU, boundary F (both absent-class conventions), Boundary IoU, the trimap curve, the
confusion matrix and the error maps of the images with the largest boundary error without
writing PNGs first.

What is scored: the ``{"preds", "masks"}`` that :class:`~sdnseg.engine.SegmentationModule`'s
``validation_step`` / ``test_step`` return — in ``test`` the last, most refined variant
(multi-scale + flip when set, then ``--postprocess`` when set), which the report's notes name.
Under DDP the metric states are summed over processes (torchmetrics), so every number covers the
whole split; the worst images are those of the process that writes (global rank 0).

With ``save_predictions`` (``--report_predictions true``) the scored label maps are written too,
``predictions/<image>_labels.png`` (train ids, 8-bit, 16-bit past 255 classes), so the same
scores can be reproduced by ``sdnseg evaluate`` and the maps refined later by ``sdnseg segfix``
without the checkpoint; under DDP each process writes its own images. Label maps an earlier run
left in that folder are removed when the epoch starts, so the folder holds one run's maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from sdnseg.data.transforms import denormalize
from sdnseg.evaluation.evaluate import WorstImages
from sdnseg.evaluation.outputs import write_evaluation, write_label_png
from sdnseg.metrics import MetricSuite

__all__ = ["EvaluationReport"]


class EvaluationReport(pl.Callback):
    """Scores every validation or test batch with a :class:`~sdnseg.metrics.MetricSuite` and
    writes the evaluation files under ``output`` at the end of the epoch.

    Args:
        output: folder for ``evaluation.json``, ``per_class.csv`` and ``report.html``.
        top_k: error maps of this many images (lowest per-image Boundary IoU) in the report.
        tolerances, biou_dilation, trimap_widths: as :class:`~sdnseg.metrics.MetricSuite`.
        save_predictions: also write the scored label maps under ``output/predictions``.
    """

    def __init__(
        self,
        output: str | Path,
        top_k: int = 8,
        tolerances: tuple[float, ...] = (1, 3),
        biou_dilation: float = 0.02,
        trimap_widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
        save_predictions: bool = False,
    ) -> None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        self.output = Path(output)
        self.top_k = top_k
        self.tolerances, self.biou_dilation = tuple(tolerances), biou_dilation
        self.trimap_widths = tuple(trimap_widths)
        self.save_predictions = save_predictions
        self.paths: dict[str, Path] = {}
        self._suite: MetricSuite | None = None

    def _start(self, pl_module: pl.LightningModule, is_global_zero: bool) -> None:
        info = pl_module.data_info.complete(pl_module.num_classes)
        self._info = info
        self._suite = MetricSuite(
            pl_module.num_classes,
            info.classes,
            info.ignore_index,
            self.tolerances,
            self.biou_dilation,
            self.trimap_widths,
        ).to(pl_module.device)
        self._worst = WorstImages(
            self.top_k, pl_module.num_classes, self.biou_dilation, info.ignore_index
        )
        self._rgb: dict[str, Any] = {}
        self._images = 0
        self._written: dict[str, str] = {}  # prediction file name -> the image it came from
        if self.save_predictions and is_global_zero:
            for stale in sorted((self.output / "predictions").glob("*_labels.png")):
                stale.unlink()

    def _add(self, pl_module: pl.LightningModule, outputs: Any, batch: dict[str, Any]) -> None:
        if not isinstance(outputs, dict) or not {"preds", "masks"} <= set(outputs):
            raise TypeError(
                "--report needs the module's step to return {'preds', 'masks'}, got "
                f"{type(outputs).__name__}"
            )
        preds, masks = outputs["preds"], outputs["masks"]
        self._suite.update(preds, masks)
        paths = batch.get("path") or [f"image{self._images + i}" for i in range(len(preds))]
        self._images += preds.shape[0]
        if self.save_predictions:
            for i, key in enumerate(paths):
                name = f"{Path(str(key)).stem}_labels.png"
                if name in self._written:  # two images of one name: the second would replace it
                    raise ValueError(
                        f"--report_predictions: {key} and {self._written[name]} would both be "
                        f"written as {name}; the images need distinct file names"
                    )
                self._written[name] = str(key)
                write_label_png(self.output / "predictions" / name, preds[i].cpu().numpy())
        if self.top_k == 0:
            return
        for i, key in enumerate(paths):
            self._worst.add(str(key), preds[i].cpu().numpy(), masks[i].cpu().numpy())
            kept = {item.key for item in self._worst.items()}
            if str(key) in kept:
                info = self._info
                image = denormalize(
                    batch["image"][i : i + 1], info.mean, info.std, masks.shape[-2:]
                )
                self._rgb[str(key)] = image[0].permute(1, 2, 0).cpu().numpy()
            self._rgb = {k: v for k, v in self._rgb.items() if k in kept}

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        result = self._suite.compute()  # synchronised over processes by torchmetrics
        self._suite.reset()
        if not trainer.is_global_zero:
            return
        what = "the single-scale prediction"
        if stage == "test":
            variant = (
                "multi-scale/flip" if len(pl_module.evaluation.variants()) > 1 else "single-scale"
            )
            what = f"the {variant} prediction" + (
                f", refined by {pl_module.postprocess}" if pl_module.postprocess != "none" else ""
            )
        ckpt_path = getattr(trainer, "ckpt_path", None)
        notes = [
            f"{self._images} {stage} images scored by sdnseg {stage} ({what}), "
            f"model {pl_module.arch}, checkpoint {ckpt_path or 'none'}. Boundary IoU band "
            f"{self.biou_dilation:g} "
            f"({'pixels' if self.biou_dilation >= 1 else 'of the image diagonal'})."
        ]
        if trainer.world_size > 1:
            notes.append(
                f"Scores cover all {trainer.world_size} processes; the error maps are rank 0's."
            )
        meta = {
            "stage": stage,
            "model": pl_module.arch,
            "checkpoint": str(ckpt_path) if ckpt_path else None,
            "scored": what,
            "images": self._images,
        }
        self.paths = write_evaluation(
            self.output,
            result,
            self._info.classes,
            self._info.palette,
            f"sdnseg {stage}: {pl_module.arch}",
            meta,
            notes,
            self._worst.items(),
            self._info.ignore_index,
            rgb=self._rgb,
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start(pl_module, trainer.is_global_zero)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if not trainer.sanity_checking:
            self._add(pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "validation")

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(pl_module, trainer.is_global_zero)

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._add(pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")
