"""Resumable sampler and SegmentationDataModule (including a Lightning resume)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import BatchSampler

from sdnseg.data import DATASETS, DatasetInfo, SyntheticShapes
from sdnseg.engine.datamodule import SegmentationDataModule
from sdnseg.engine.sampler import ResumableRandomSampler
from tests.data.layouts import write_folder

# --- sampler -----------------------------------------------------------------------------------


def test_sampler_orders() -> None:
    sampler = ResumableRandomSampler(20, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(20)) and len(sampler) == 20
    assert list(ResumableRandomSampler(20, seed=3)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(20))
    assert list(ResumableRandomSampler(20, seed=4)) != first
    assert list(ResumableRandomSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("consumed_batches", [0, 1, 3, 5])
def test_sampler_resume_yields_exactly_the_rest(consumed_batches: int) -> None:
    sampler = ResumableRandomSampler(23, seed=11)
    sampler.set_epoch(2)
    batches = iter(BatchSampler(sampler, batch_size=4, drop_last=True))
    seen = [index for _ in range(consumed_batches) for index in next(batches)]
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["consumed"] == 4 * consumed_batches
    full = sampler.order(2)

    resumed = ResumableRandomSampler(23, seed=0)  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert seen + rest == full
    # The next epoch is whole again and equals an uninterrupted run's.
    resumed.set_epoch(3)
    assert list(resumed) == ResumableRandomSampler(23, seed=11).order(3)


def test_sampler_resume_state_applies_to_its_epoch_only() -> None:
    sampler = ResumableRandomSampler(10, seed=1)
    sampler.load_state_dict({"epoch": 4, "consumed": 6, "seed": 1, "num_samples": 10})
    sampler.set_epoch(5)
    assert len(list(sampler)) == 10
    with pytest.raises(ValueError, match="state is for 12 samples, this dataset has 10"):
        sampler.load_state_dict({"epoch": 0, "consumed": 0, "seed": 1, "num_samples": 12})
    with pytest.raises(ValueError, match="consumed must be in 0..10"):
        sampler.load_state_dict({"epoch": 0, "consumed": 11})


# --- data module -------------------------------------------------------------------------------


def synthetic_module(**kwargs) -> SegmentationDataModule:
    options = {
        "batch_size": 4,
        "synthetic_size": 32,
        "synthetic_num_train": 16,
        "synthetic_num_val": 6,
        "synthetic_num_classes": 4,
        "seed": 5,
    }
    options.update(kwargs)
    return SegmentationDataModule("synthetic", **options)


def test_synthetic_batches_and_metadata() -> None:
    dm = synthetic_module(crop_size=(24, 24))
    reference = SyntheticShapes(1, 16, 4)
    assert dm.num_classes == 4 and dm.classes == reference.classes  # before setup
    assert dm.palette == reference.palette and dm.ignore_index == 255
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 24, 24) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 24, 24) and batch["mask"].dtype == torch.int64
    assert len(batch["path"]) == 4 and batch["path"][0].startswith("synthetic/train/")
    assert len(dm.train_dataloader()) == 4
    val = list(dm.val_dataloader())
    assert [len(b["path"]) for b in val] == [4, 2]  # same-size synthetic images batch together
    assert val[0]["image"].shape == (4, 3, 32, 32) and val[0]["path"][0] == "synthetic/val/000000"
    assert len(dm.test_dataloader()) == 2  # test_split defaults to val_split


def test_folder_module_evaluates_full_size(tmp_path: Path) -> None:
    folder_root = write_folder(tmp_path / "folder")
    dm = SegmentationDataModule("folder", folder_root, batch_size=2, crop_size=(16, 16))
    assert dm.classes == ("background", "road", "car") and dm.num_classes == 3
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, 16, 16)
    shapes = [(b["image"].shape, b["mask"].shape) for b in dm.val_dataloader()]
    assert shapes == [((1, 3, 24, 32), (1, 24, 32)), ((1, 3, 30, 20), (1, 30, 20))]
    resized = SegmentationDataModule("folder", folder_root, base_size=(48, 64))
    batch = next(iter(resized.val_dataloader()))
    assert batch["image"].shape == (1, 3, 48, 64) and batch["mask"].shape == (1, 24, 32)
    raw = resized.raw_dataset("val")[0]  # as stored: full size, uint8, no normalisation
    assert raw["image"].shape == (3, 24, 32) and raw["image"].dtype == torch.uint8
    assert raw["mask"].shape == (24, 32)


def test_module_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'voc'; known: \['ade20k', 'camvid'"):
        SegmentationDataModule("voc")
    with pytest.raises(ValueError, match="needs root"):
        SegmentationDataModule("camvid")
    with pytest.raises(FileNotFoundError, match="missing"):
        SegmentationDataModule("camvid", tmp_path / "missing").setup("fit")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_module_state_resumes_mid_epoch(num_workers: int) -> None:
    dm = synthetic_module(num_workers=num_workers)
    dm.setup("fit")
    seen = []
    for i, batch in enumerate(dm.train_dataloader()):
        if i == 2:
            break
        seen += batch["path"]
        dm.mark_consumed()
    state = dm.state_dict()
    assert state["sampler"]["epoch"] == 0 and state["sampler"]["consumed"] == 8

    fresh = synthetic_module(num_workers=0)
    fresh.load_state_dict(state)
    rest = [p for batch in fresh.train_dataloader() for p in batch["path"]]
    order = ResumableRandomSampler(16, seed=5).order(0)
    assert seen + rest == [f"synthetic/train/{i:06d}" for i in order]


class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Conv2d(3, 1, 1)
        self.seen: list[list[str]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(list(batch["path"]))
        return self.layer(batch["image"]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(tmp_path: Path, ckpt_path: Path | None = None, **trainer_kwargs) -> list[list[str]]:
    model = _Recorder()
    trainer = L.Trainer(
        **trainer_kwargs,
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1)],
    )
    trainer.fit(model, datamodule=synthetic_module(), ckpt_path=ckpt_path)
    return model.seen


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec")
def test_lightning_resume_neither_repeats_nor_skips(tmp_path: Path) -> None:
    full = _fit(tmp_path / "full")
    assert len(full) == 8
    assert {p for batch in full[:4] for p in batch} == {
        f"synthetic/train/{i:06d}" for i in range(16)
    }
    for step in range(1, 8):  # mid epoch 0, end of epoch 0 (step 4), epoch 1
        (ckpt,) = (tmp_path / "full" / "ckpt").glob(f"*step={step}.ckpt")
        assert _fit(tmp_path / f"resume{step}", ckpt) == full[step:]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore:.*LeafSpec")
def test_lightning_resume_with_shortened_epochs(tmp_path: Path) -> None:
    full = _fit(tmp_path / "full", limit_train_batches=3)
    assert len(full) == 6
    (ckpt,) = (tmp_path / "full" / "ckpt").glob("*step=3.ckpt")  # end of the shortened epoch 0
    assert _fit(tmp_path / "resume", ckpt, limit_train_batches=3) == full[3:]


def test_module_asks_the_dataset_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A class added to DATASETS works without the module knowing its name."""

    class Tiles(SyntheticShapes):
        options = ("num_images", "size")

        @classmethod
        def info(cls, root=None, **options) -> DatasetInfo:
            described = super().info(root, **options)
            return dataclasses.replace(described, crop_size=(16, 16), uniform_size=False)

    monkeypatch.setitem(DATASETS, "tiles", Tiles)
    dm = SegmentationDataModule("tiles", batch_size=2, synthetic_size=24, synthetic_num_val=3)
    assert dm.crop_size == (16, 16) and dm.val_batch_size == 1 and dm.num_classes == 6
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 16, 16)
    assert [b["image"].shape for b in dm.val_dataloader()] == [(1, 3, 24, 24)] * 3
