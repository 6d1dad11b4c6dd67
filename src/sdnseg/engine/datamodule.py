"""SegmentationDataModule: datasets, transforms, a resumable sampler and batching for Lightning.

Resuming mid-epoch. The training sampler is a :class:`ResumableRandomSampler`: a fresh
permutation per epoch from ``seed + epoch``. Because DataLoader workers (and Lightning's fetcher)
draw indices ahead of the training step, what the sampler has *yielded* is not what the model has
*consumed*. So :meth:`SegmentationDataModule.state_dict` records the epoch and the number of
batches the trainer's fit loop has processed in it (``batch_progress.current.processed``, the
counter Lightning itself resumes from); on :meth:`~SegmentationDataModule.load_state_dict` the
sampler skips ``batches * batch_size`` indices at the start of that epoch's permutation, so the
resumed run sees exactly the remaining samples. Lightning calls both methods when it writes and
restores a checkpoint. Without a trainer (plain loops), call :meth:`mark_consumed` per batch.
Exact for one process with ``drop_last=True``; under DDP Lightning wraps the sampler and only the
epoch order is reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sdnseg.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetInfo,
    collate_segmentation,
    dataset_class,
    eval_transforms,
    train_transforms,
)
from sdnseg.engine.sampler import ResumableRandomSampler
from sdnseg.engine.seeding import EpochKeyedSampler, SeededItems
from sdnseg.engine.verify import verify_dataset

__all__ = ["SegmentationDataModule"]


class SegmentationDataModule(L.LightningDataModule):
    """Datasets + mmseg transforms + loaders for one of :data:`sdnseg.data.DATASETS`.

    Training items go through :func:`~sdnseg.data.transforms.train_transforms` (fixed
    ``crop_size``), validation/test items through
    :func:`~sdnseg.data.transforms.eval_transforms`: resized images, masks at the original size.
    Batches follow :func:`~sdnseg.data.collate_segmentation`. What depends on the dataset
    (classes, palette, ignore index, default crop, evaluation batching) comes from its class's
    :class:`~sdnseg.data.DatasetInfo`; the dataset is built with the options its class declares.

    Args:
        name: ``synthetic``, ``camvid``, ``cityscapes``, ``ade20k`` or ``folder``.
        root: dataset root (unused for synthetic).
        batch_size: training batch size.
        num_workers: DataLoader workers.
        crop_size: training crop (h, w); default the dataset's (the whole synthetic image, else
            (512, 512)).
        base_size: base (H, W) of the training ratio resize and of the evaluation resize; None
            uses each image's own size.
        train_split, val_split: split names; ``test_split`` None reuses ``val_split``.
        val_batch_size: evaluation batch size; default 1, or ``batch_size`` where every image
            has the same size (synthetic data).
        mean, std: normalisation on 0..255; None: what the trainer's model asks for (its
            ``input_normalization``, e.g. 127.5/127.5 for the EfficientNet-Lite encoders), else
            ImageNet's.
        ratio_range, cat_max_ratio: see :func:`~sdnseg.data.transforms.train_transforms`.
        classes: class names for ``folder`` (else read from the root).
        synthetic_size, synthetic_num_classes, synthetic_num_train, synthetic_num_val: options of
            :class:`~sdnseg.data.synthetic.SyntheticShapes`.
        seed: sampler seed (and synthetic seed).
        pin_memory: pin loader memory.
        verify: at setup, read every item of the splits used once (with a progress bar) and
            report every bad file before training starts (:mod:`sdnseg.engine.verify`).
    """

    def __init__(
        self,
        name: str = "synthetic",
        root: str | Path | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        crop_size: tuple[int, int] | None = None,
        base_size: tuple[int, int] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        val_batch_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        classes: Sequence[str] | None = None,
        synthetic_size: int = 128,
        synthetic_num_classes: int = 6,
        synthetic_num_train: int = 256,
        synthetic_num_val: int = 64,
        seed: int = 0,
        pin_memory: bool = False,
        verify: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.dataset_class = dataset_class(name)
        if self.dataset_class.needs_root and root is None:
            raise ValueError(f"dataset {name!r} needs root=")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.name, self.root = name, root
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self._crop_size = tuple(crop_size) if crop_size is not None else None
        self.base_size = tuple(base_size) if base_size is not None else None
        self.train_split, self.val_split = train_split, val_split
        self.test_split = test_split if test_split is not None else val_split
        self._val_batch_size = val_batch_size
        self._mean = tuple(mean) if mean is not None else None
        self._std = tuple(std) if std is not None else None
        self.ratio_range, self.cat_max_ratio = tuple(ratio_range), cat_max_ratio
        # Every dataset option these arguments can give, by the dataset's own option names; the
        # dataset class takes those it declares (``num_images`` is per split, see _options).
        self._offered: dict[str, Any] = {
            "classes": tuple(classes) if classes is not None else None,
            "size": synthetic_size,
            "num_classes": synthetic_num_classes,
            "seed": seed,
        }
        self._num_images = {"train": synthetic_num_train, "eval": synthetic_num_val}
        self.seed = seed
        self.verify = verify
        self._verified: set[str] = set()
        self.datasets: dict[str, Dataset] = {}
        self._sampler: ResumableRandomSampler | None = None
        self._pending_state: dict[str, int] | None = None
        self._consumed_batches: tuple[int, int] | None = None  # (epoch, batches), mark_consumed

    # --- dataset description (available before setup) --------------------------------------

    def _options(self, train: bool) -> dict[str, Any]:
        """The dataset options given (not None) that the dataset class declares."""
        offered = {**self._offered, "num_images": self._num_images["train" if train else "eval"]}
        declared = self.dataset_class.options
        return {k: v for k, v in offered.items() if k in declared and v is not None}

    @cached_property
    def info(self) -> DatasetInfo:
        """The dataset's :class:`~sdnseg.data.DatasetInfo` (may read a class file, no items)."""
        return self.dataset_class.info(self.root, **self._options(train=False))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return list(self.info.palette)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index

    def _model_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        trainer = getattr(self, "trainer", None)
        model = getattr(trainer, "lightning_module", None) if trainer is not None else None
        norm = getattr(model, "input_normalization", None)
        return norm if norm is not None else (IMAGENET_MEAN, IMAGENET_STD)

    @property
    def mean(self) -> tuple[float, ...]:
        """The normalisation mean: as given, else the model's, else ImageNet's (0..255)."""
        return self._mean if self._mean is not None else tuple(self._model_normalization()[0])

    @property
    def std(self) -> tuple[float, ...]:
        """The normalisation std: as given, else the model's, else ImageNet's (0..255)."""
        return self._std if self._std is not None else tuple(self._model_normalization()[1])

    @property
    def crop_size(self) -> tuple[int, int]:
        """The training crop: as given, else the dataset's default."""
        return self._crop_size if self._crop_size is not None else self.info.crop_size

    @property
    def val_batch_size(self) -> int:
        """As given, else ``batch_size`` where all images share one size, else 1."""
        if self._val_batch_size is not None:
            return self._val_batch_size
        return self.batch_size if self.info.uniform_size else 1

    # --- datasets ---------------------------------------------------------------------------

    def _build(self, split: str, train: bool) -> Dataset:
        transforms = (
            train_transforms(
                self.base_size,
                self.crop_size,
                self.mean,
                self.std,
                ratio_range=self.ratio_range,
                cat_max_ratio=self.cat_max_ratio,
                ignore_index=self.ignore_index,
            )
            if train
            else eval_transforms(self.base_size, self.mean, self.std)
        )
        return self.dataset_class.build(
            self.root, split, transforms=transforms, **self._options(train)
        )

    def raw_dataset(self, split: str) -> Dataset:
        """A split's items as stored (full-size uint8 image, label mask), for figures and checks."""
        dataset = self._build(split, train=False)
        dataset.transforms = None  # type: ignore[attr-defined]
        return dataset

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and "train" not in self.datasets:
            self.datasets["train"] = self._build(self.train_split, train=True)
        if stage in (None, "fit", "validate") and "val" not in self.datasets:
            self.datasets["val"] = self._build(self.val_split, train=False)
        if stage in (None, "test") and "test" not in self.datasets:
            self.datasets["test"] = self._build(self.test_split, train=False)
        if self.verify:
            for key, dataset in self.datasets.items():
                if key not in self._verified:
                    verify_dataset(dataset, getattr(self, f"{key}_split"))
                    self._verified.add(key)

    def _dataset(self, key: str) -> Dataset:
        if key not in self.datasets:
            stage = {"train": "fit", "val": "validate", "test": "test"}[key]
            self.setup(stage)
        return self.datasets[key]

    # --- loaders ----------------------------------------------------------------------------

    @property
    def sampler(self) -> ResumableRandomSampler:
        """The training sampler (built with the training dataset)."""
        if self._sampler is None:
            self._sampler = ResumableRandomSampler(len(self._dataset("train")), seed=self.seed)
            if self._pending_state is not None:
                self._sampler.load_state_dict(self._pending_state)
                self._pending_state = None
        return self._sampler

    def _loader(self, dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        # Its own generator: creating an iterator draws the workers' base seed from it, not from
        # the global generator the model's dropout uses (which a resume restores).
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_segmentation,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        if len(dataset) < self.batch_size:  # type: ignore[arg-type]
            raise ValueError(
                f"training split {self.train_split!r} has {len(dataset)} items, "  # type: ignore[arg-type]
                f"fewer than batch_size={self.batch_size}"
            )
        return self._loader(
            SeededItems(dataset, self.seed),
            self.batch_size,
            sampler=EpochKeyedSampler(self.sampler),
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), self.val_batch_size, shuffle=False)

    def set_epoch(self, epoch: int) -> None:
        """Set the training sampler's epoch (Lightning does it, except under DDP's wrapper)."""
        self.sampler.set_epoch(epoch)

    # --- resume -----------------------------------------------------------------------------

    def mark_consumed(self, batches: int = 1) -> None:
        """Count ``batches`` more training batches consumed (only needed without a trainer)."""
        epoch = self.sampler.epoch
        done = self._consumed_batches[1] if self._consumed_batches is not None else 0
        if self._consumed_batches is not None and self._consumed_batches[0] != epoch:
            done = 0
        self._consumed_batches = (epoch, done + batches)

    def _progress(self) -> tuple[int, int, float] | None:
        """(epoch, batches consumed in it, batches per epoch) from the trainer or mark_consumed."""
        per_epoch = self.sampler.num_samples // self.batch_size
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            try:
                loop = trainer.fit_loop
                # The sampler's epoch (Lightning sets it as each epoch starts), not the fit loop's
                # epoch count: at the end of fit Lightning has counted the last epoch done, even
                # one that max_steps cut short, so that count is one ahead of these batches.
                epoch = self.sampler.epoch
                batches = int(loop.epoch_loop.batch_progress.current.processed)
                return epoch, batches, min(per_epoch, trainer.num_training_batches)
            except (AttributeError, TypeError):
                pass
        if self._consumed_batches is None:
            return None
        return (*self._consumed_batches, per_epoch)

    def state_dict(self) -> dict[str, Any]:
        """``{"sampler": {"epoch", "consumed", "seed", "num_samples"}}`` (see module docstring)."""
        if self._sampler is None and self._pending_state is not None:
            return {"sampler": dict(self._pending_state)}
        if "train" not in self.datasets and self._sampler is None:
            return {}
        state = self.sampler.state_dict()
        progress = self._progress()
        if progress is not None:
            epoch, batches, per_epoch = progress
            if batches >= per_epoch:  # the epoch is done: resume at the start of the next one
                epoch, batches = epoch + 1, 0
            state.update(epoch=epoch, consumed=batches * self.batch_size)
        return {"sampler": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the sampler so that the resumed epoch skips what was already consumed."""
        state = state_dict.get("sampler")
        if state is None:
            return
        if self._sampler is None:
            self._pending_state = dict(state)
        else:
            self._sampler.load_state_dict(state)
        self._consumed_batches = (int(state["epoch"]), int(state["consumed"]) // self.batch_size)
