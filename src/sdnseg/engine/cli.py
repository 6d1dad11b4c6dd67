"""The ``sdnseg`` command.

``sdnseg fit|validate|test|predict`` is a LightningCLI over :class:`SegmentationModule` and
:class:`SegmentationDataModule`, configured by flat YAML files (``configs/*.yaml``)
and ``--section.key value`` overrides::

    sdnseg fit --config configs/quickstart.yaml
    sdnseg fit --config configs/fcn_r18d8_sdn_camvid.yaml --data.root data/camvid
    sdnseg fit --config configs/quickstart.yaml \\
        --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt
    sdnseg test --ckpt_path last.ckpt --data.name camvid --data.root data/camvid \\
        --data.test_split test --model.test_scales '[0.5,0.75,1.0,1.25,1.5,1.75,2.0]' \\
        --model.test_flip true
    sdnseg predict --ckpt_path last.ckpt --predict_path 'photos/*.jpg' --show_errors true

What the CLI adds to LightningCLI: one run folder per run, ``<runs_dir>/<name>/version_N`` with
TensorBoard and CSV logs, the resolved ``config.yaml`` and ``checkpoints/``: ``last.ckpt`` (after
each validation, at the end, and every ``--last_checkpoint.every_n_train_steps``) and the best by
``--checkpoint.monitor`` (default ``val/mIoU``), all written atomically; a rich progress bar;
SyncBatchNorm whenever DDP spans several GPUs; with ``--ckpt_path``, the network (arch, overrides,
classes, inference mode) is taken from the checkpoint unless given; ``--postprocess crf`` (DenseCRF)
or ``--postprocess segfix --segfix_checkpoint PATH`` (SegFix, a network trained with
``sdnseg fit --model.arch segfix_r18``) for ``validate``, ``test`` and ``predict``;
``--report DIR`` for ``validate`` and ``test`` writes the evaluator's
files (:class:`~sdnseg.engine.evaluation_report.EvaluationReport`), with ``--report_predictions
true`` the scored label maps too. Other subcommands
(:data:`COMMANDS`) are functions ``main(argv) -> int`` in their own modules, imported only when
called.

Errors a user can cause (unknown model or dataset, wrong layout, class count mismatch, a
checkpoint of another model, a diverging run) print one ``error: ...`` paragraph and exit 1; set
``SDNSEG_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO

from sdnseg.engine import errors, resume
from sdnseg.engine.callbacks import (
    BestCheckpoint,
    EpochProgressBar,
    LastCheckpoint,
    PredictionWriter,
)
from sdnseg.engine.checkpoint_io import AtomicCheckpointIO
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.evaluation_report import EvaluationReport
from sdnseg.engine.image_logging import ValidationImages
from sdnseg.engine.module import SegmentationModule
from sdnseg.engine.signals import SaveOnSignal
from sdnseg.inference import hub, load_model
from sdnseg.inference.checkpoint import DataInfo, read_checkpoint
from sdnseg.inference.images import ImageFiles, list_images, predict_loader
from sdnseg.inference.postprocess import require_crf
from sdnseg.inference.segfix import read_segfix_record
from sdnseg.models import get_config

__all__ = ["COMMANDS", "SegmentationCLI", "main"]

logger = logging.getLogger(__name__)

# Subcommands that are not Lightning's: name -> "module:function", function(argv) -> exit code.
COMMANDS = {
    "demo": "sdnseg.engine.demo:main",
    "evaluate": "sdnseg.evaluation.cli:main",
    "segfix": "sdnseg.inference.segfix_files:main",
    "diffusion": "sdnseg.viz.diffusion:main",
    "visualize_sdn": "sdnseg.engine.visualize:main",
    "export": "sdnseg.export:main",
    "study": "sdnseg.studies.runner:main",
    "train_inverseform": "sdnseg.engine.inverseform:main",
}
# Model arguments describing the network, taken from --ckpt_path when left unset.
FROM_CHECKPOINT = (
    "arch",
    "num_classes",
    "model_overrides",
    "eval_mode",
    "eval_crop",
    "eval_stride",
)
# Exceptions that are the user's to fix: printed as one message, without a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FloatingPointError,
    ModuleNotFoundError,
    MisconfigurationException,
)
_LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")


def _device_count(devices: Any, gpu: bool) -> int:
    """How many devices a ``--trainer.devices`` value asks for."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        if devices == "auto" or devices.strip() == "-1":
            return torch.cuda.device_count() if gpu else 1
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
        devices = int(devices)
    if devices == -1:
        return torch.cuda.device_count() if gpu else 1
    return int(devices)


def _next_version(folder: Path) -> int:
    versions = [
        int(match.group(1))
        for path in (folder.iterdir() if folder.is_dir() else [])
        if (match := re.fullmatch(r"version_(\d+)", path.name))
    ]
    return max(versions, default=-1) + 1


class _ArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line and a tip, not the 100-line usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {message}\ntip: the accepted options: {prog} --help\n")
        sys.exit(2)


class SegmentationCLI(LightningCLI):
    """LightningCLI for :class:`SegmentationModule` / :class:`SegmentationDataModule`.

    Args:
        args: command-line arguments (None: ``sys.argv[1:]``).
        run: run the subcommand (False: only parse and instantiate).
    """

    def __init__(self, args: Sequence[str] | None = None, run: bool = True) -> None:
        super().__init__(
            SegmentationModule,
            SegmentationDataModule,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            parser_class=_ArgumentParser,
            parser_kwargs={
                "description": (
                    "Boundary-accurate semantic segmentation with Semantic Diffusion Networks. "
                    f"Also: sdnseg {{{','.join(COMMANDS)}}} --help."
                )
            },
            args=args,
            run=run,
        )

    # --- arguments --------------------------------------------------------------------------

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--name", type=str | None, default=None, help="Run name; default <arch>_<data.name>."
        )
        parser.add_argument("--runs_dir", type=str, default="runs", help="Root of the run folders.")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")  # the best one
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/mIoU",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-step={step}-{val/mIoU:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument(
                "--resume_mode",
                type=Literal["full", "weights"],
                default="full",
                help="With --ckpt_path: 'full' restores everything (optimiser, schedule, step; "
                "their options given again are shadowed, with a warning), 'weights' loads the "
                "weights only and starts a new run with this command's hyper-parameters.",
            )
        if subcommand in ("validate", "test", "predict"):
            parser.add_argument(
                "--postprocess",
                type=Literal["none", "crf", "segfix"] | None,
                default=None,
                help="Refine the softmax with DenseCRF (needs pip install 'sdnseg[crf]') or with "
                "SegFix (needs --segfix_checkpoint).",
            )
            parser.add_argument(
                "--segfix_checkpoint",
                "--segfix-checkpoint",
                type=str | None,
                default=None,
                help="For --postprocess segfix: a checkpoint of sdnseg fit --model.arch "
                "segfix_r18 (or segfix_efflite2).",
            )
        if subcommand in ("validate", "test"):
            parser.add_argument(
                "--report",
                type=str | None,
                default=None,
                help="Folder for evaluation.json, per_class.csv and report.html (as sdnseg "
                "evaluate writes): boundary F, Boundary IoU, trimap curve, confusion matrix, "
                "error maps.",
            )
            parser.add_argument(
                "--report_top_k", type=int, default=8, help="Error maps in the --report."
            )
            parser.add_argument(
                "--report_predictions",
                type=bool,
                default=False,
                help="Also write the scored label maps to <report>/predictions/*_labels.png, "
                "for sdnseg evaluate and sdnseg segfix.",
            )
        if subcommand == "predict":
            parser.add_argument(
                "--predict_path", type=str, required=True, help="An image, a folder or a glob."
            )
            parser.add_argument(
                "--mask_dir", type=str | None, default=None, help="Masks (<stem>.png) for errors."
            )
            parser.add_argument(
                "--show_errors", type=bool, default=False, help="Also write error maps."
            )
            parser.add_argument(
                "--output_dir", type=str | None, default=None, help="Default <run>/predictions."
            )
        return parser

    def _parse_ckpt_path(self) -> None:
        """Fill the network's unset arguments from ``--ckpt_path`` (Lightning's version would
        replace every model argument, test-time options included)."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        path = config.get("ckpt_path")
        if not path or path in _LIGHTNING_CKPT_ALIASES:
            return
        if Path(path).is_dir():  # a save_pretrained folder (sdnseg export --format hub)
            hparams = hub.module_arguments(hub.read_pretrained_config(path))
        else:
            checkpoint, _ = read_checkpoint(path, mmap=True)
            hparams = checkpoint.get("hyper_parameters") or {}
        for key in FROM_CHECKPOINT:
            if config.model.get(key) is None and hparams.get(key) is not None:
                config.model[key] = hparams[key]
        config.model.pretrained = False  # the weights come from the checkpoint

    # --- instantiation ----------------------------------------------------------------------

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        trainer = config.trainer
        accelerator = trainer.accelerator if isinstance(trainer.accelerator, str) else "custom"
        gpu = accelerator in ("gpu", "cuda") or (
            accelerator == "auto" and torch.cuda.is_available()
        )
        world = _device_count(trainer.devices, gpu) * int(trainer.num_nodes)
        # PyTorch's SyncBatchNorm runs on CUDA only; across GPUs it is what mmseg trains with.
        if gpu and world > 1:
            trainer.sync_batchnorm = True
        elif trainer.sync_batchnorm:
            logger.warning("sync_batchnorm needs several CUDA devices; turned off")
            trainer.sync_batchnorm = False
        if config.get("postprocess"):
            config.model.postprocess = config.postprocess
        if config.get("segfix_checkpoint"):
            config.model.segfix_checkpoint = config.segfix_checkpoint
        # Fail now, not after the model is loaded.
        if config.model.postprocess == "crf":
            require_crf()
        if config.model.postprocess == "segfix":
            if not config.model.segfix_checkpoint:
                raise ValueError("--postprocess segfix needs --segfix_checkpoint PATH")
            read_segfix_record(config.model.segfix_checkpoint)
        if config.get("report_predictions") and not config.get("report"):
            raise ValueError("--report_predictions true needs --report DIR (they go under it)")
        arch = config.model.arch
        if config.get("report") and arch and get_config(arch).decoder == "segfix":
            raise ValueError(
                f"--report scores label maps; {arch} is a SegFix network, which predicts none "
                "(its val/test scores are logged)"
            )
        if self.subcommand == "predict" and not config.get("ckpt_path"):
            raise ValueError("predict needs --ckpt_path (the weights to predict with)")

    def _run_name(self) -> str:
        config = self.config[self.subcommand]
        if config.get("name"):
            return config.name
        arch = config.model.arch or "model"
        suffix = "predict" if self.subcommand == "predict" else config.data.name
        return f"{arch}_{suffix}"

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        config = self.config[self.subcommand]
        trainer = self._get(self.config_init, "trainer", default={})
        callbacks = list(trainer.get("callbacks") or [])
        if trainer.get("logger") in (None, True):
            root, name = Path(config.runs_dir), self._run_name()
            version = _next_version(root / name)  # one number for both loggers
            csv = CSVLogger(root, name=name, version=version)
            _ = csv.experiment  # create the folder now: CSVLogger warns if it finds files there
            errors.note_run_dir(Path(csv.log_dir))  # removed again if the run fails at once
            tensorboard = TensorBoardLogger(
                root, name=name, version=version, default_hp_metric=False
            )
            kwargs["logger"] = [tensorboard, csv]
            # Overlays and error maps of fixed validation images at every validation.
            callbacks.append(ValidationImages())
        plugins = trainer.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        if trainer.get("enable_progress_bar") is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            callbacks.append(EpochProgressBar())
        kwargs["callbacks"] = [*callbacks, SaveOnSignal()]
        return super().instantiate_trainer(**kwargs)

    # --- subcommands ------------------------------------------------------------------------

    def before_fit(self) -> None:
        # SegmentationDataModule resumes mid-epoch through its sampler, whose position is in the
        # checkpoint; Lightning only looks for state on the DataLoader and would warn regardless.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
        config = self.config_init[self.subcommand]
        if config.get("resume_mode") == "weights" and config.get("ckpt_path"):
            resume.load_weights(self.model, config.ckpt_path)
            config.ckpt_path = None  # a new run from step 0: no optimiser, schedule or step

    def _add_report(self) -> None:
        config = self.config[self.subcommand]
        if config.get("report"):
            report = EvaluationReport(
                config.report, config.report_top_k, save_predictions=config.report_predictions
            )
            self.trainer.callbacks.append(report)

    def before_validate(self) -> None:
        self._add_report()

    def before_test(self) -> None:
        self._add_report()

    def predict(
        self,
        model: SegmentationModule,
        datamodule: SegmentationDataModule | None = None,
        ckpt_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Label ``--predict_path`` and write PNGs (see :class:`PredictionWriter`)."""
        config = self.config[self.subcommand]
        if Path(ckpt_path).is_dir():  # a save_pretrained folder: its weights, no Lightning state
            predictor = load_model(ckpt_path)
            model.net.load_state_dict(predictor.net.state_dict())
            model.data_info = data = DataInfo(**{k: getattr(predictor, k) for k in hub.DATA_KEYS})
            ckpt_path = None
        else:
            data = read_checkpoint(ckpt_path, mmap=True)[1].data
        dataset = ImageFiles(
            list_images(config.predict_path),
            base_size=data.base_size,
            mean=data.mean,
            std=data.std,
            masks=config.show_errors,
            mask_dir=config.mask_dir,
        )
        writer = PredictionWriter(config.output_dir, show_errors=config.show_errors)
        self.trainer.callbacks.append(writer)
        loader = predict_loader(dataset)
        self.trainer.predict(
            model, dataloaders=loader, ckpt_path=ckpt_path, return_predictions=False
        )
        self.prediction_dir = writer.folder(self.trainer)
        if writer.failed:
            raise ValueError(
                f"wrote the predictions of {len(dataset) - len(writer.failed)} of "
                f"{len(dataset)} images to {self.prediction_dir}; {len(writer.failed)} failed: "
                + "; ".join(writer.failed)
            )


def _run_command(name: str, argv: list[str]) -> int:
    module_name, function = COMMANDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = module_name if err.name and module_name.startswith(err.name) else err.name
        print(f"error: 'sdnseg {name}' is not available: no module {missing!r}", file=sys.stderr)
        return 1
    if not callable(entry := getattr(module, function, None)):
        print(f"error: 'sdnseg {name}' is not available: no {COMMANDS[name]}", file=sys.stderr)
        return 1
    return int(entry(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sdnseg`` console script; returns the exit code.

    ``argv[0]`` in :data:`COMMANDS` runs that tool; anything else goes to LightningCLI.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return _run_command(argv[0], argv[1:])
    # Lightning's DDP launcher re-runs sys.argv in each extra process, so it must be this command.
    saved_argv = sys.argv
    sys.argv = [saved_argv[0] if saved_argv else "sdnseg", *argv]
    failed = True
    try:
        SegmentationCLI()
        failed = False
    except SystemExit as exit_:
        failed = not isinstance(exit_.code, int) or exit_.code != 0
        return exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except USER_ERRORS as err:
        if os.environ.get("SDNSEG_DEBUG"):
            raise
        print(f"error: {errors.user_message(err)}", file=sys.stderr)
        return 1
    finally:
        sys.argv = saved_argv
        errors.end_run_dirs(failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
