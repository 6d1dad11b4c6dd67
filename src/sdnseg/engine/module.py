"""SegmentationModule: the training, evaluation and checkpoint logic around a segmentor.

The segmentor (``net``) is a plain :class:`~sdnseg.models.Segmentor`, built here from a zoo name
or given from Python; it knows nothing of losses, optimisers or data. This module adds:

- the loss (:func:`~sdnseg.models.segmentation_loss`, auxiliary head weighted) and a divergence
  guard: a non-finite loss stops the run with :class:`FloatingPointError` naming the step, before
  the optimiser touches the weights, so the last checkpoint stays the last good one;
- the reference optimiser (:mod:`sdnseg.engine.optimizers`) and its per-iteration poly
  schedule with optional linear warm-up (:mod:`sdnseg.engine.schedules`);
- evaluation on full-resolution masks, ``whole`` or ``slide``, with test-time variants and a
  post-processing (:mod:`sdnseg.engine.evaluation_settings`); ``test`` reports every variant
  beside the single-scale one (``test/mIoU``, ``test/mIoU_ms``, ``test/mIoU_crf``...),
  ``validate`` the post-processed one as ``val/*_crf``, ``val/*_segfix``;
- mIoU/mAcc/aAcc and boundary F at 1 px and 3 px under both absent-boundary conventions
  (:class:`~sdnseg.engine.scores.SegmentationScores`);
- SegFix networks (``arch="segfix_r18"``): their own loss and scores
  (:mod:`sdnseg.engine.segfix_steps`);
- self-describing checkpoints (a :class:`~sdnseg.inference.CheckpointRecord`: model
  configuration, classes, palette, normalisation, test size) and an exact resume: the random
  generators' states are saved and restored just before the first resumed batch is drawn
  (:mod:`sdnseg.engine.checkpoint_io`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from sdnseg.data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, default_palette, denormalize
from sdnseg.engine import checkpoint_io, resume
from sdnseg.engine.callbacks import last_good_sentence
from sdnseg.engine.evaluation_settings import EvaluationSettings
from sdnseg.engine.losses import maskformer_loss, segfix_loss, training_loss
from sdnseg.engine.optimizers import build_optimizer, reference_settings
from sdnseg.engine.schedules import poly_scheduler
from sdnseg.engine.scores import SegmentationScores
from sdnseg.engine.segfix_steps import (
    check_segfix_options,
    is_segfix,
    segfix_eval_step,
    segfix_predict_error,
)
from sdnseg.inference import checkpoint as ckpt
from sdnseg.inference import hub
from sdnseg.metrics import SegFixScores
from sdnseg.models import (
    ModelConfig,
    build_model,
    get_config,
    input_normalization,
    list_models,
    segmentation_loss,
)

__all__ = ["SegmentationModule"]

logger = logging.getLogger(__name__)


class SegmentationModule(L.LightningModule):
    """Train and evaluate a segmentor.

    Args:
        arch: zoo model name (see :func:`sdnseg.models.list_models`), e.g. ``"fcn_r18d8_sdn"``.
        num_classes: output classes; None takes them from the datamodule at setup.
        model_overrides: :func:`~sdnseg.models.create_model` overrides, e.g.
            ``{"backbone": "resnet10t", "backbone_kwargs": {}}`` or ``{"operator": "conv"}``.
        pretrained: backbone weights: False, True (timm hub) or a local path.
        net: instead of ``arch``, any ``nn.Module`` following the Segmentor contract (``forward``
            -> logits at input size; optionally ``forward_train`` -> ``SegmentorOutput``;
            ``inference``).
        optimizer: ``"sgd"`` (momentum) or ``"adamw"``.
        lr, weight_decay: None picks the reference values for the architecture (see module doc).
        momentum: SGD momentum.
        betas: AdamW betas.
        min_lr: the poly schedule's floor (mmseg ``eta_min``); None: 1e-4 for SGD, 0 for AdamW.
        poly_power: the poly exponent.
        warmup_steps, warmup_ratio: linear warm-up length and start factor (0: none).
        schedule_steps: iterations of the poly decay; None uses the trainer's
            ``estimated_stepping_batches`` (``max_steps``, e.g. 80k / 160k).
        aux_weight: weight of the auxiliary head's loss.
        losses: None (cross-entropy + ``aux_weight`` × auxiliary) or a list of
            ``{class_path, init_args, weight}`` loss specs, summed (:mod:`sdnseg.engine.losses`);
            built at ``fit`` setup (``module.setup("fit")`` when used without a trainer).
        avg_non_ignore: average the loss over labelled pixels only (mmseg averages over all).
        ignore_index: unlabelled pixels in the masks.
        eval_mode: ``"whole"`` or ``"slide"`` inference for validation, test and predict.
        eval_crop, eval_stride: sliding window (h, w) for ``"slide"``.
        test_scales, test_flip: multi-scale + flip for ``test``/``predict``, e.g. the paper's
            ``[0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]`` and True; reported as ``test/*_ms``.
        boundary_tolerances: boundary F tolerances in pixels.
        postprocess: ``"none"``, ``"crf"`` (DenseCRF) or ``"segfix"`` (SegFix, needs
            ``segfix_checkpoint``) on the validate/test/predict probabilities.
        segfix_checkpoint: a checkpoint of a SegFix network (``sdnseg fit --model.arch
            segfix_r18``) for ``postprocess="segfix"``.
        segfix_distance: SegFix's offset length in pixels at the resolution its network sees
            (openseg: 2); structures thinner than about twice that can be overwritten.
        backbone_lr_mult: the encoder's learning rate over ``lr`` (frozen BN and a frozen first
            phase: :class:`sdnseg.engine.finetune.EncoderFineTuning`).
    """

    def __init__(
        self,
        arch: str | None = None,
        num_classes: int | None = None,
        model_overrides: dict[str, Any] | None = None,
        pretrained: bool | str = False,
        net: nn.Module | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr: float | None = None,
        weight_decay: float | None = None,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        min_lr: float | None = None,
        poly_power: float = 0.9,
        warmup_steps: int = 0,
        warmup_ratio: float = 1e-6,
        schedule_steps: int | None = None,
        aux_weight: float = 0.4,
        losses: list[dict[str, Any]] | None = None,
        avg_non_ignore: bool = False,
        ignore_index: int = IGNORE_INDEX,
        eval_mode: Literal["whole", "slide"] | None = None,
        eval_crop: tuple[int, int] | None = None,
        eval_stride: tuple[int, int] | None = None,
        test_scales: list[float] | None = None,
        test_flip: bool = False,
        boundary_tolerances: tuple[float, ...] = (1, 3),
        postprocess: Literal["none", "crf", "segfix"] = "none",
        segfix_checkpoint: str | None = None,
        segfix_distance: float = 2.0,
        backbone_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if (arch is None) == (net is None):
            raise ValueError(
                "give either a model name (--model.arch, one of "
                f"{list_models()}) or, from Python, net=<nn.Module>"
            )
        self.evaluation = EvaluationSettings(
            eval_mode,
            eval_crop,
            eval_stride,
            test_scales,
            test_flip,
            postprocess,
            segfix_checkpoint,
            segfix_distance,
        )
        self.save_hyperparameters(ignore=["net"])
        self.ignore_index = ignore_index
        self.arch = arch
        self.model_overrides = dict(model_overrides or {})
        self.model_config: ModelConfig | None = None
        if arch is not None:
            # Resolve the name now so that a typo fails before any data is read.
            self.model_config = get_config(arch, **self.model_overrides)
        self.net: nn.Module | None = None
        self.num_classes: int | None = None
        if net is not None:
            self.model_config = getattr(net, "config", None)
        # A SegFix network predicts boundaries and directions, not classes (see module doc).
        self.is_segfix = is_segfix(net, self.model_config)
        if self.is_segfix:
            check_segfix_options(arch or type(net).__name__, postprocess)
        decoder = self.model_config.decoder if self.model_config is not None else None
        # Checked before a model is built and its weights are read.
        self.optimizer_settings = reference_settings(optimizer, decoder, lr, weight_decay, min_lr)
        if net is not None:
            self._attach(net)
        elif num_classes is not None:
            self._attach(build_model(self.model_config, num_classes, pretrained))
        self._val_postprocess = False  # set by a `validate` run with a post-processing
        # Filled from the datamodule at setup (or from a checkpoint); these defaults only serve a
        # module used without data.
        self.data_info = ckpt.DataInfo(ignore_index=ignore_index)
        # The --model.losses sum, built at fit setup; a SegFix network's needs no data.
        self.criterion: nn.Module | None = (
            segfix_loss(losses, arch or type(net).__name__, ignore_index)
            if self.is_segfix
            else None
        )
        if decoder == "maskformer":  # MaskFormerLoss on its per-layer predictions, no data needed
            self.criterion = maskformer_loss(losses, arch or type(net).__name__, ignore_index)
        self._rng_to_restore: dict | None = None

    @property
    def postprocess(self) -> str:
        """The post-processing of validate/test/predict: ``"none"``, ``"crf"`` or ``"segfix"``."""
        return self.evaluation.postprocess

    # --- the segmentor ----------------------------------------------------------------------

    def _attach(self, net: nn.Module) -> None:
        num_classes = getattr(net, "num_classes", None)
        if not isinstance(num_classes, int):
            raise ValueError(f"net {type(net).__name__} has no integer attribute num_classes")
        if self.hparams.num_classes is not None and self.hparams.num_classes != num_classes:
            raise ValueError(
                f"num_classes={self.hparams.num_classes} but the given net has {num_classes}"
            )
        self.net = net
        self.num_classes = num_classes
        self.hparams.num_classes = num_classes  # so that the checkpoint's hparams rebuild it
        self.val_metrics = self._metric_group()

    def _metric_group(self) -> SegmentationScores | SegFixScores:
        if self.is_segfix:
            return SegFixScores(ignore_index=self.ignore_index)
        return SegmentationScores(
            self.num_classes, self.ignore_index, self.hparams.boundary_tolerances
        )

    def forward(self, images: torch.Tensor) -> Any:
        return self.net(images)

    @property
    def input_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) the encoder's weights expect (the datamodule's default), or None."""
        return input_normalization(self.model_config) if self.model_config else None

    def setup(self, stage: str) -> None:
        """Take class count, names, palette and normalisation from the datamodule; build the net
        if ``num_classes`` was left to the data."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        classes = getattr(datamodule, "classes", None)  # any datamodule may lack the metadata
        if self.net is None:
            if classes is None:
                raise ValueError("num_classes is not set and there is no datamodule to tell it")
            self._attach(build_model(self.model_config, len(classes), self.hparams.pretrained))
        elif classes is not None and len(classes) != self.num_classes:
            raise ValueError(
                f"the model predicts {self.num_classes} classes but the data "
                f"{getattr(datamodule, 'name', '')!r} has {len(classes)} "
                f"({', '.join(map(str, classes[:5]))}...); set --model.num_classes "
                f"{len(classes)} or leave it out to take it from the data"
            )
        if classes is not None:
            palette = getattr(datamodule, "palette", None) or default_palette(len(classes))
            self.data_info = ckpt.DataInfo(
                classes=classes,
                palette=palette,
                mean=getattr(datamodule, "mean", IMAGENET_MEAN),
                std=getattr(datamodule, "std", IMAGENET_STD),
                base_size=getattr(datamodule, "base_size", None),
                ignore_index=getattr(datamodule, "ignore_index", self.ignore_index),
            )
        if stage == "fit" and self.hparams.losses is not None and not self.is_segfix:
            name = self.arch or type(self.net).__name__
            args = (self.num_classes, self.ignore_index, self.hparams.aux_weight, datamodule)
            self.criterion = training_loss(self.hparams.losses, self.net, name, *args)

    # --- training ---------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, masks = batch["image"], batch["mask"]
        # A net given from Python may have the plain forward contract only (logits).
        forward_train = getattr(self.net, "forward_train", self.net)
        outputs = forward_train(images)
        loss = (
            self.criterion(outputs, masks)
            if self.criterion is not None
            else segmentation_loss(
                outputs,
                masks,
                self.ignore_index,
                self.hparams.aux_weight,
                self.hparams.avg_non_ignore,
            )
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss is {loss.item()} at step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); stopped before the update. "
                + (last_good_sentence(self.trainer) if self._trainer is not None else "")
            )
        size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if self._trainer is not None and self.trainer.optimizers:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log("train/lr", lr, batch_size=size)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = build_optimizer(
            self.net,
            hp.optimizer,
            self.optimizer_settings,
            hp.momentum,
            hp.betas,
            hp.backbone_lr_mult,
        )
        total = self.hparams.schedule_steps or self.trainer.estimated_stepping_batches
        if total == float("inf") or total < 1:
            raise ValueError(
                "the poly schedule needs a length: set --trainer.max_steps (or max_epochs) or "
                "--model.schedule_steps"
            )
        scheduler = poly_scheduler(
            optimizer,
            int(total),
            self.optimizer_settings.min_lr,
            self.hparams.poly_power,
            self.hparams.warmup_steps,
            self.hparams.warmup_ratio,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    # --- evaluation -------------------------------------------------------------------------

    def _rgb(self, images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """uint8 RGB images at ``size`` from normalised ones (for the CRF's appearance kernel)."""
        return denormalize(images, self.data_info.mean, self.data_info.std, size)

    def _segfix_step(self, batch: dict[str, Any], scores: SegFixScores, stage: str) -> dict:
        values = segfix_eval_step(self.net, self.criterion, batch, scores)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in values.items()},
            batch_size=len(batch["mask"]),
            sync_dist=True,
        )
        return {}

    def on_validation_start(self) -> None:
        # Post-processing in `sdnseg validate` only: not at every validation of a training run.
        self._val_postprocess = (
            self.postprocess != "none"
            and self._trainer is not None
            and self.trainer.state.fn == TrainerFn.VALIDATING
        )
        if self._val_postprocess:
            self.evaluation.refiner(self.device)  # a bad checkpoint fails before the first batch
            self.val_pp_metrics = self._metric_group().to(self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Scores the batch; returns ``{"preds", "masks"}`` (post-processed when a `validate` run
        sets it) for callbacks (the ``--report``)."""
        if self.is_segfix:
            return self._segfix_step(batch, self.val_metrics, "val")
        images, masks = batch["image"], batch["mask"]
        probs = self.evaluation.probs(self.net, images, masks.shape[-2:])
        # Cross-entropy of the full-resolution prediction, over labelled pixels (0 if none).
        log_probs = probs.clamp_min(1e-12).log()
        loss = F.nll_loss(log_probs, masks, ignore_index=self.ignore_index, reduction="sum")
        loss = loss / (masks != self.ignore_index).sum().clamp_min(1)
        self.log("val/loss", loss, batch_size=images.shape[0], sync_dist=True)
        preds = probs.argmax(dim=1)
        self.val_metrics.update(preds, masks)
        if self._val_postprocess:
            rgb = self._rgb(images, masks.shape[-2:])
            preds = self.evaluation.refine(rgb, probs).argmax(dim=1)
            self.val_pp_metrics.update(preds, masks)
        return {"preds": preds, "masks": masks}

    def on_validation_epoch_end(self) -> None:
        groups = {"": self.val_metrics}
        if self._val_postprocess:
            groups[f"_{self.postprocess}"] = self.val_pp_metrics
        self._log_metrics("val", groups)

    def on_test_start(self) -> None:
        # Built here because the test options may be set after construction (CLI --postprocess).
        suffixes = [""] if self.is_segfix else list(self.evaluation.variants())
        if self.postprocess != "none":
            suffixes += [s + f"_{self.postprocess}" for s in suffixes]
        self.test_metrics = nn.ModuleDict({s or "ss": self._metric_group() for s in suffixes})
        self.test_metrics.to(self.device)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Scores every test variant; returns ``{"preds", "masks"}`` of the last, most refined one
        (multi-scale if set, post-processed if set) for callbacks (the ``--report``)."""
        if self.is_segfix:
            return self._segfix_step(batch, self.test_metrics["ss"], "test")
        images, masks = batch["image"], batch["mask"]
        size = masks.shape[-2:]
        for suffix, (scales, flip) in self.evaluation.variants().items():
            probs = self.evaluation.probs(self.net, images, size, scales, flip)
            preds = probs.argmax(dim=1)
            self.test_metrics[suffix or "ss"].update(preds, masks)
            if self.postprocess != "none":
                rgb = self._rgb(images, size)
                preds = self.evaluation.refine(rgb, probs).argmax(dim=1)
                self.test_metrics[suffix + f"_{self.postprocess}"].update(preds, masks)
        return {"preds": preds, "masks": masks}

    def on_test_epoch_end(self) -> None:
        groups = {("" if key == "ss" else key): group for key, group in self.test_metrics.items()}
        self._log_metrics("test", groups, per_class=True)

    def _log_metrics(
        self,
        stage: str,
        groups: dict[str, SegmentationScores | SegFixScores],
        per_class: bool = False,
    ) -> None:
        for suffix, scores in groups.items():
            if self.is_segfix:
                values = scores.compute()
            else:  # per-class IoU of the single-scale prediction, plain and post-processed
                classes = self.data_info.classes or [str(i) for i in range(self.num_classes)]
                single_scale = suffix in ("", f"_{self.postprocess}")
                values = scores.compute(classes if per_class and single_scale else None)
            # torchmetrics has synchronised the states already, so every process holds the same
            # values; sync_dist only keeps Lightning's distributed logging consistent.
            self.log_dict({f"{stage}/{k}{suffix}": v for k, v in values.items()}, sync_dist=True)
            scores.reset()

    def on_predict_start(self) -> None:
        if self.is_segfix:
            raise segfix_predict_error(self.arch or "this model")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Label maps at each image's own size (batch size 1: images differ in size); an image
        that could not be read passes its error on to the writer."""
        if batch.get("error"):
            return {"labels": None, "path": batch["path"], "error": batch["error"]}
        images = batch["image"]
        size = [int(s) for s in batch["size"][0]]
        settings = self.evaluation
        probs = settings.probs(self.net, images, size, settings.test_scales, settings.test_flip)
        if self.postprocess != "none":
            probs = settings.refine(batch["rgb"], probs)
        return {"labels": probs.argmax(dim=1).cpu(), "path": batch["path"]}

    # --- checkpoints ------------------------------------------------------------------------

    def metadata(self) -> ckpt.CheckpointRecord:
        """This model's checkpoint record (``checkpoint["sdnseg"]`` holds its ``to_dict()``)."""
        return ckpt.CheckpointRecord(
            arch=self.arch,
            model_overrides=dict(self.model_overrides),
            model_config=self.model_config.to_dict() if self.model_config else None,
            num_classes=self.num_classes,
            data=self.data_info.complete(self.num_classes),
            inference=ckpt.InferenceSettings(
                self.evaluation.eval_mode, self.evaluation.eval_crop, self.evaluation.eval_stride
            ),
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[ckpt.METADATA_KEY] = self.metadata().to_dict()
        # The last validation's numbers, for the model card of `sdnseg export --format hub`.
        logged = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint[hub.METRICS_KEY] = hub.metrics_record(logged)
        checkpoint[checkpoint_io.RNG_KEY] = checkpoint_io.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        record = ckpt.read_record(checkpoint)
        config = self.model_config.to_dict() if self.model_config else None
        checkpoint_io.check_compatible(record, self.arch, config, self.num_classes)
        path = getattr(self._trainer, "ckpt_path", None) or "checkpoint"
        resume.check_state_fits(self, checkpoint.get("state_dict", {}), path)
        if self.data_info.classes is None:  # no datamodule: the checkpoint's data describes it
            self.data_info = record.data
        self._rng_to_restore = checkpoint.get(checkpoint_io.RNG_KEY)
        if self._trainer is not None and self.trainer.state.fn != TrainerFn.FITTING:
            # Evaluating: the checkpoint callbacks' state (best score, paths) is of no use, and
            # Lightning would warn about every callback of the training run it cannot match.
            checkpoint.pop("callbacks", None)
        elif self._trainer is not None:
            datamodule = getattr(self.trainer, "datamodule", None)
            resume.warn_shadowed(checkpoint, self.hparams, getattr(datamodule, "hparams", None))

    def on_train_epoch_start(self) -> None:
        # Under DDP Lightning wraps the sampler and sets the wrapper's epoch only; the data
        # module's sampler keys the per-sample augmentation seeds by epoch (engine/seeding.py).
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.trainer.world_size > 1 and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)

    def on_train_start(self) -> None:
        # Restored here, not at load time: Lightning creates the data-loader iterator in between,
        # which draws from the global generator; the uninterrupted run drew that at epoch start.
        if self._rng_to_restore is not None:
            checkpoint_io.set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
